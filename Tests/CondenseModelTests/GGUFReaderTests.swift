import CondenseModel
import CondenseTokenizer
import Foundation
import Testing

struct GGUFReaderTests {
    @Test func readsHeaderMetadataAndTensorInfos() throws {
        let file = try GGUFFile(path: LoaderFixtures.path("tiny-llama.gguf"))
        #expect(file.version == 3)
        #expect(file.alignment == 32)
        #expect(file.metadataKeys.first == "general.architecture")
        #expect(try file.string("general.architecture") == "llama")
        #expect(try file.string("general.name") == "tiny-llama")
        #expect(try file.int("llama.block_count") == 2)
        #expect(try file.float("llama.rope.freq_base") == 100_000)
        #expect(try file.bool("tokenizer.ggml.add_bos_token") == false)
        #expect(try file.string("no.such.key") == nil)
        #expect(file.tensorInfos.count == 1 + 2 * 9 + 1)
        let down = try #require(file.tensorInfo(named: "blk.0.ffn_down.weight"))
        #expect(down.dimensions == [64, 32])
        #expect(down.shape == [32, 64])
        #expect(down.type == .f32)
        #expect(down.byteCount == 64 * 32 * 4)
        #expect(down.fileOffset % 32 == 0)
        let first = try file.tensorF32(named: "blk.0.ffn_down.weight")
        #expect(first.count == 2048)
        // Reading releases the mapped pages; a second read faults the same bytes back in.
        #expect(try file.tensorF32(named: "blk.0.ffn_down.weight") == first)
    }

    @Test func typeMismatchedAccessorsNameTheKey() {
        let error = loadError { try GGUFFile(path: LoaderFixtures.path("tiny-llama.gguf")).int("general.name") }
        #expect(error == .invalidMetadata(key: "general.name", detail: "expected integer, found string"))
        let arrayError = loadError { try GGUFFile(path: LoaderFixtures.path("tiny-llama.gguf")).stringArray("tokenizer.ggml.token_type") }
        #expect(arrayError == .invalidMetadata(key: "tokenizer.ggml.token_type", detail: "expected array of strings, found array<int32>[300]"))
    }

    @Test func modelConfigsOfTheTinyModels() throws {
        let llama = try GGUFFile(path: LoaderFixtures.path("tiny-llama.gguf")).modelConfig()
        #expect(llama == ModelConfig(
            architecture: .llama, vocabSize: 300, hiddenSize: 32, intermediateSize: 64, layerCount: 2, headCount: 4,
            kvHeadCount: 2, headDim: 8, rmsNormEps: 1e-5, ropeTheta: 100_000, ropeScaling: nil,
            maxPositionEmbeddings: 256, tieWordEmbeddings: true))
        let qwen3 = try GGUFFile(path: LoaderFixtures.path("tiny-qwen3.gguf")).modelConfig()
        #expect(qwen3.architecture == .qwen3)
        #expect(qwen3.headDim == 16)
        #expect(qwen3.ropeTheta == 1_000_000)
        #expect(qwen3.rmsNormEps == 1e-6)
        #expect(try GGUFFile(path: LoaderFixtures.path("tiny-qwen2.gguf")).modelConfig().architecture == .qwen2)
    }

    @Test func tokenizerSpecFromMetadata() throws {
        let spec = try GGUFFile(path: LoaderFixtures.path("tiny-llama.gguf")).tokenizerSpec()
        #expect(spec.tokens.count == 300)
        #expect(Array(spec.tokens.prefix(3)) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        #expect(spec.tokens[3 + 0x41] == "A")
        #expect(spec.tokens[3 + 0x20] == "Ġ")
        #expect(spec.merges.count == 41)
        #expect(spec.merges.first == "Ġ t")
        #expect(Array(spec.tokenTypes.prefix(4)) == [3, 3, 3, 1])
        #expect(spec.preTokenizer == "gpt2")
        #expect(spec.bosTokenID == 1)
        #expect(spec.eosTokenID == 2)
        #expect(!spec.addBOS)
        #expect(!spec.addEOS)
    }

    /// Every metadata value type, arrays included, and GGUF version 2.
    @Test func everyValueTypeParses() throws {
        var builder = GGUFTestFileBuilder()
        builder.version = 2
        builder.metadata = [
            ("u8", .uint8(200)), ("i8", .int8(-5)), ("u16", .uint16(60_000)), ("i16", .int16(-300)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-7)), ("u64", .uint64(1 << 40)), ("i64", .int64(-(1 << 40))),
            ("f32", .float32(1.5)), ("f64", .float64(-2.25)), ("yes", .bool(1)), ("text", .string("héllo")),
            ("words", .stringArray(["a", "", "ü"])), ("numbers", .int32Array([1, -2, 3])),
            // An array of two arrays of u8: skipped over, readable as a raw value.
            ("nested", .raw(type: 9, bytes: [9, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
                + [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7] + [0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 8, 9])),
        ]
        builder.tensors = [.init(name: "w", dimensions: [2], type: 0, data: [0, 0, 128, 63, 0, 0, 0, 64])]
        let scratch = try LoaderScratchDirectory()
        let file = try GGUFFile(path: try scratch.write(builder.bytes(), to: "all.gguf"))
        #expect(file.version == 2)
        #expect(file.value("u8") == .uint8(200))
        #expect(try file.int("i8") == -5)
        #expect(try file.int("u16") == 60_000)
        #expect(try file.int("i16") == -300)
        #expect(try file.int("u32") == 4_000_000_000)
        #expect(try file.int("u64") == 1 << 40)
        #expect(try file.int("i64") == -(1 << 40))
        #expect(try file.float("f32") == 1.5)
        #expect(try file.float("f64") == -2.25)
        #expect(try file.bool("yes") == true)
        #expect(try file.string("text") == "héllo")
        #expect(try file.stringArray("words") == ["a", "", "ü"])
        #expect(try file.int32Array("numbers") == [1, -2, 3])
        guard case .array(let nested)? = file.value("nested") else {
            Issue.record("nested is not an array")
            return
        }
        #expect(nested.count == 2)
        #expect(try file.tensorF32(named: "w") == [1, 2])
    }

    /// A minimal Llama GGUF with hyperparameters and the given `rope_freqs.weight` divisors.
    private func llamaWithRopeFreqs(_ divisors: [Float]) -> [UInt8] {
        var builder = GGUFTestFileBuilder()
        builder.metadata = [
            ("general.architecture", .string("llama")), ("llama.embedding_length", .uint32(32)),
            ("llama.block_count", .uint32(1)), ("llama.feed_forward_length", .uint32(64)),
            ("llama.attention.head_count", .uint32(4)), ("llama.context_length", .uint32(131_072)),
            ("llama.attention.layer_norm_rms_epsilon", .float32(1e-5)), ("llama.rope.freq_base", .float32(500_000)),
        ]
        var data: [UInt8] = []
        for value in divisors { withUnsafeBytes(of: value.bitPattern.littleEndian) { data += $0 } }
        builder.tensors = [
            .init(name: "token_embd.weight", dimensions: [32, 10], type: 0, data: [UInt8](repeating: 0, count: 32 * 10 * 4)),
            .init(name: "rope_freqs.weight", dimensions: [UInt64(divisors.count)], type: 0, data: data),
        ]
        return builder.bytes()
    }

    /// llama.cpp stores Llama 3 RoPE scaling as divisors; these were computed with transformers' formula
    /// (theta 500000, head_dim 8, factor 32, low 1, high 4, original context 8192).
    @Test func llama3ScalingFromRopeFreqs() throws {
        let scratch = try LoaderScratchDirectory()
        let path = try scratch.write(llamaWithRopeFreqs([1, 1, 3.292262077331543, 32]), to: "llama3.gguf")
        let config = try GGUFFile(path: path).modelConfig()
        #expect(config.ropeScaling == Llama3RopeScaling(factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192))
        #expect(config.vocabSize == 10)
        #expect(config.tieWordEmbeddings)

        let odd = try scratch.write(llamaWithRopeFreqs([1, 2, 3.292262077331543, 32]), to: "odd.gguf")
        #expect(loadError { try GGUFFile(path: odd).modelConfig() }
            == .invalidMetadata(key: "rope_freqs.weight", detail: "divisor 1 is 2.0, Llama 3 scaling with factor 32.0 gives 1.0"))
    }

    @Test(.enabled(if: LoaderFixtures.defaultModelPresent, "default model absent: set CONDENSE_TEST_MODEL or add models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    func defaultModelMetadata() throws {
        let file = try GGUFFile(path: LoaderFixtures.defaultModelPath)
        #expect(try file.modelConfig() == ModelConfig(
            architecture: .llama, vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, layerCount: 30,
            headCount: 9, kvHeadCount: 3, headDim: 64, rmsNormEps: 1e-5, ropeTheta: 100_000, ropeScaling: nil,
            maxPositionEmbeddings: 8192, tieWordEmbeddings: true))
        let spec = try file.tokenizerSpec()
        #expect(spec.tokens.count == 49152)
        #expect(spec.merges.count == 48900)
        #expect(spec.preTokenizer == "smollm")
        #expect(spec.bosTokenID == 1 && spec.eosTokenID == 2)
        #expect(!spec.addBOS)
    }
}
