import CondenseModel
import Foundation
import Testing

/// Malformed input must end in a `ModelLoadError` that names the problem, never in a crash.
struct LoaderErrorTests {
    static let llamaGGUF = "tiny-llama.gguf"

    @Test func missingFilesAreReported() {
        #expect(loadError { try GGUFFile(path: "/nonexistent/model.gguf") } == .fileNotFound(path: "/nonexistent/model.gguf"))
        #expect(loadError { try ModelLoader.load(path: "/nonexistent/model") } == .fileNotFound(path: "/nonexistent/model"))
        #expect(loadError { try SafeTensorsFile(path: "/nonexistent/a.safetensors") } == .fileNotFound(path: "/nonexistent/a.safetensors"))
    }

    @Test func directoryWithoutConfigIsReported() throws {
        let scratch = try LoaderScratchDirectory()
        let error = loadError { try ModelLoader.load(path: scratch.url.path) }
        #expect(error == .fileNotFound(path: scratch.url.path + "/config.json"))
    }

    /// Prefixes cut densely through the header and metadata, and spread through the tensor data, are all reported as truncated.
    @Test func truncatedGGUFAtEveryCutPoint() throws {
        let bytes = try LoaderFixtures.bytes(Self.llamaGGUF)
        let scratch = try LoaderScratchDirectory()
        let headerCuts = Array(0..<min(bytes.count, 12_000)).filter { $0 < 64 || $0 % 13 == 0 }
        let dataCuts = Array(stride(from: 12_000, to: bytes.count, by: 4_001)) + [bytes.count - 1]
        for cut in headerCuts + dataCuts {
            let path = try scratch.write(Array(bytes.prefix(cut)), to: "cut.gguf")
            let error = loadError { try ModelLoader.load(path: path) }
            guard case .truncated? = error else {
                Issue.record("cut at \(cut): expected truncated, got \(String(describing: error))")
                return
            }
        }
    }

    @Test func badMagicIsReported() throws {
        var bytes = try LoaderFixtures.bytes(Self.llamaGGUF)
        bytes[3] = UInt8(ascii: "X")
        let scratch = try LoaderScratchDirectory()
        let path = try scratch.write(bytes, to: "magic.gguf")
        #expect(loadError { try GGUFFile(path: path) } == .badMagic(path: path, found: "\"GGUX\" (0x47475558)"))
        let binary = try scratch.write([0, 1, 2, 3, 4, 5, 6, 7], to: "binary.gguf")
        #expect(loadError { try GGUFFile(path: binary) } == .badMagic(path: binary, found: "0x00010203"))
    }

    @Test(arguments: [UInt32(1), 4, 0x0300_0000])
    func unsupportedVersionIsReported(version: UInt32) throws {
        var bytes = try LoaderFixtures.bytes(Self.llamaGGUF)
        bytes.patch(version, at: 4)
        let scratch = try LoaderScratchDirectory()
        let path = try scratch.write(bytes, to: "version.gguf")
        #expect(loadError { try GGUFFile(path: path) } == .unsupportedVersion(path: path, version: version))
    }

    @Test func unsupportedTensorTypesAreNamed() throws {
        let scratch = try LoaderScratchDirectory()
        var builder = GGUFTestFileBuilder()
        builder.tensors = [.init(name: "blk.0.ffn_up.weight", dimensions: [256], type: 10, data: [UInt8](repeating: 0, count: 84))]
        let known = try GGUFFile(path: try scratch.write(builder.bytes(), to: "q2k.gguf"))
        #expect(known.tensorInfos.first?.type.description == "Q2_K")
        #expect(loadError { try known.tensorF32(named: "blk.0.ffn_up.weight") } == .unsupportedTensorType(tensor: "blk.0.ffn_up.weight", type: "Q2_K"))

        builder.tensors[0].type = 77
        let unknown = try scratch.write(builder.bytes(), to: "unknown.gguf")
        #expect(loadError { try GGUFFile(path: unknown) } == .unsupportedTensorType(tensor: "blk.0.ffn_up.weight", type: "type#77"))
    }

    @Test func missingTensorIsNamed() throws {
        var bytes = try LoaderFixtures.bytes(Self.llamaGGUF)
        let position = try #require(bytePosition(of: Array("blk.1.ffn_up.weight".utf8), in: bytes))
        bytes.replaceSubrange(position..<(position + 19), with: Array("blk.1.ffn_xx.weight".utf8))
        let scratch = try LoaderScratchDirectory()
        let path = try scratch.write(bytes, to: "missing.gguf")
        #expect(loadError { try ModelLoader.load(path: path) } == .missingTensor(name: "blk.1.ffn_up.weight"))
    }

    @Test func shapeMismatchNamesTensorAndShapes() throws {
        var bytes = try LoaderFixtures.bytes(Self.llamaGGUF)
        let key = Array("llama.feed_forward_length".utf8)
        let position = try #require(bytePosition(of: key, in: bytes))
        bytes.patch(UInt32(65), at: position + key.count + 4)
        let scratch = try LoaderScratchDirectory()
        let path = try scratch.write(bytes, to: "shape.gguf")
        #expect(loadError { try ModelLoader.load(path: path) }
            == .shapeMismatch(tensor: "blk.0.ffn_gate.weight", expected: [65, 32], actual: [64, 32]))

        let directory = try scratch.copyFixture("tiny-llama")
        try replaceText(in: directory + "/config.json", "\"intermediate_size\": 64", with: "\"intermediate_size\": 65")
        #expect(loadError { try ModelLoader.load(path: directory) }
            == .shapeMismatch(tensor: "model.layers.0.mlp.gate_proj.weight", expected: [65, 32], actual: [64, 32]))
    }

    /// Offset of the data-offset field in the tensor info of a 2-D tensor.
    private func offsetField(of tensor: String, in bytes: [UInt8]) throws -> Int {
        let position = try #require(bytePosition(of: Array(tensor.utf8), in: bytes))
        return position + tensor.utf8.count + 4 + 2 * 8 + 4
    }

    @Test func corruptedOffsetsAreReported() throws {
        let original = try LoaderFixtures.bytes(Self.llamaGGUF)
        let field = try offsetField(of: "blk.0.ffn_up.weight", in: original)
        let scratch = try LoaderScratchDirectory()

        var misaligned = original
        misaligned.patch(original.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: field, as: UInt64.self) } + 4, at: field)
        let misalignedPath = try scratch.write(misaligned, to: "misaligned.gguf")
        guard case .corrupted(_, let detail)? = loadError({ try GGUFFile(path: misalignedPath) }) else {
            Issue.record("misaligned offset not reported as corrupted")
            return
        }
        #expect(detail.contains("blk.0.ffn_up.weight") && detail.contains("not aligned"))

        var overlapping = original
        overlapping.patch(UInt64(0), at: field)  // token_embd.weight starts at 0
        let overlappingPath = try scratch.write(overlapping, to: "overlap.gguf")
        guard case .corrupted(_, let overlapDetail)? = loadError({ try GGUFFile(path: overlappingPath) }) else {
            Issue.record("overlapping tensors not reported as corrupted")
            return
        }
        #expect(overlapDetail.contains("overlap"))

        for beyond in [UInt64(1 << 40), UInt64.max - 31] {
            var outside = original
            outside.patch(beyond, at: field)
            let outsidePath = try scratch.write(outside, to: "outside.gguf")
            let error = loadError { try GGUFFile(path: outsidePath) }
            if case .truncated(_, let detail)? = error {
                #expect(detail.contains("blk.0.ffn_up.weight"))
            } else if case .corrupted? = error {
                // UInt64.max does not fit an Int offset; reported as corruption.
            } else {
                Issue.record("offset \(beyond): unexpected \(String(describing: error))")
            }
        }
    }

    @Test func absurdCountsAndLengthsAreReported() throws {
        let original = try LoaderFixtures.bytes(Self.llamaGGUF)
        let scratch = try LoaderScratchDirectory()
        // tensor count, metadata count, and the length of the first key
        for (offset, value) in [(8, UInt64(1) << 50), (16, UInt64(1) << 50), (24, UInt64(1) << 40), (24, UInt64.max)] {
            var bytes = original
            bytes.patch(value, at: offset)
            let path = try scratch.write(bytes, to: "count.gguf")
            let error = loadError { try GGUFFile(path: path) }
            switch error {
            case .truncated?, .corrupted?: break
            default: Issue.record("value \(value) at \(offset): unexpected \(String(describing: error))")
            }
        }
    }

    @Test func malformedMetadataIsReported() throws {
        let scratch = try LoaderScratchDirectory()
        var builder = GGUFTestFileBuilder()
        builder.metadata = [("weird", .raw(type: 13, bytes: [0, 0, 0, 0]))]
        let unknownType = try scratch.write(builder.bytes(), to: "type.gguf")
        #expect(loadError { try GGUFFile(path: unknownType) } == .corrupted(path: unknownType, detail: "metadata 'weird' has unknown value type 13"))

        builder.metadata = [("flag", .bool(2))]
        let badBool = try scratch.write(builder.bytes(), to: "bool.gguf")
        #expect(loadError { try GGUFFile(path: badBool) } == .corrupted(path: badBool, detail: "metadata 'flag' bool has value 2"))

        builder.metadata = [("general.alignment", .uint32(12))]
        let badAlignment = try scratch.write(builder.bytes(), to: "alignment.gguf")
        #expect(loadError { try GGUFFile(path: badAlignment) } == .invalidMetadata(key: "general.alignment", detail: "must be a positive multiple of 8, is uint32(12)"))

        builder.metadata = [("general.architecture", .string("llama")), ("general.architecture", .string("qwen2"))]
        let duplicate = try scratch.write(builder.bytes(), to: "duplicate.gguf")
        #expect(loadError { try GGUFFile(path: duplicate) } == .corrupted(path: duplicate, detail: "metadata key 'general.architecture' appears twice"))

        builder.metadata = [("general.architecture", .string("llama"))]
        let noHyperparameters = try scratch.write(builder.bytes(), to: "bare.gguf")
        #expect(loadError { try GGUFFile(path: noHyperparameters).modelConfig() } == .missingMetadata(key: "llama.embedding_length"))
    }

    @Test func unsupportedArchitecturesAreNamed() throws {
        var bytes = try LoaderFixtures.bytes(Self.llamaGGUF)
        let key = Array("general.architecture".utf8)
        let position = try #require(bytePosition(of: key, in: bytes))
        bytes.replaceSubrange((position + key.count + 12)..<(position + key.count + 17), with: Array("gemma".utf8))
        let scratch = try LoaderScratchDirectory()
        let path = try scratch.write(bytes, to: "gemma.gguf")
        #expect(loadError { try ModelLoader.load(path: path) } == .unsupportedArchitecture(name: "gemma"))

        let directory = try scratch.copyFixture("tiny-llama")
        try replaceText(in: directory + "/config.json", "\"model_type\": \"llama\"", with: "\"model_type\": \"gpt_neox\"")
        #expect(loadError { try ModelLoader.load(path: directory) } == .unsupportedArchitecture(name: "gpt_neox"))
    }
}
