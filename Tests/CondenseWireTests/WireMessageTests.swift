import CondenseWire
import Foundation
import Testing

@Suite("Service message wrappers")
struct WireMessageTests {
    @Test("every message survives a round trip with every field set", arguments: wireSamples())
    func roundTrip(sample: WireSample) throws {
        let fieldless = ["condense.v1.GetModelInfoRequest", "condense.v1.ListAdaptersRequest"]
        #expect(sample.encoded.isEmpty == fieldless.contains(sample.messageName))
        #expect(try sample.decodesToSample(sample.encoded))
        #expect(try sample.reencode(sample.encoded) == sample.encoded)
    }

    @Test("default values encode to no bytes and decode from none", arguments: wireSamples().filter { $0.variant == 0 })
    func defaults(sample: WireSample) {
        #expect(sample.encodedDefault == [])
    }

    @Test("Python-encoded fixtures decode to the same values, and Swift encodes the same bytes", arguments: wireSamples())
    func pythonFixture(sample: WireSample) throws {
        let fixture = try [UInt8](Data(contentsOf: WireTestPaths.fixtures.appendingPathComponent(sample.fileName)))
        #expect(try sample.decodesToSample(fixture))
        #expect(sample.encoded == fixture)
    }

    @Test("Python decodes Swift-encoded messages to the same values", .enabled(if: PythonProtobuf.available))
    func pythonDecodesSwift() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("condense-wire-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let samples = wireSamples()
        for sample in samples {
            try Data(sample.encoded).write(to: directory.appendingPathComponent(sample.fileName))
        }
        let result = try PythonProtobuf.run(["scripts/wire-fixtures.py", "check", directory.path])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("python decoded \(samples.count) Swift-encoded messages, 0 mismatches"))
    }

    @Test("every message type has a sample")
    func samplesCoverEveryMessage() {
        // 57 message types across common, embedding, finetune and worker.proto.
        #expect(Set(wireSamples().map(\.messageName)).count == 57)
    }

    @Test("known encodings match the protobuf wire format")
    func knownBytes() throws {
        let health = HealthResponse(status: .serving, detail: "ok")
        #expect(health.serializedBytes() == [0x08, 0x01, 0x12, 0x02, 0x6F, 0x6B])
        // Packed floats: tag 2 length-delimited, 4 bytes of little-endian 1.0.
        let vector = Vector(values: [1])
        #expect(vector.serializedBytes() == [0x12, 0x04, 0x00, 0x00, 0x80, 0x3F])
        // A presence field set to its zero value is still sent.
        let options = EmbedOptions(normalize: false)
        #expect(options.serializedBytes() == [0x20, 0x00])
        #expect(try EmbedOptions(serializedBytes: [0x20, 0x00]).normalize == false)
        #expect(try EmbedOptions(serializedBytes: []).normalize == nil)
    }

    @Test("unknown fields are skipped (newer peers may add fields)")
    func unknownFieldsSkipped() throws {
        // Field 99, varint 7, then detail "ok".
        let bytes: [UInt8] = [0x98, 0x06, 0x07, 0x12, 0x02, 0x6F, 0x6B]
        #expect(try HealthResponse(serializedBytes: bytes) == HealthResponse(detail: "ok"))
    }

    @Test("invalid UTF-8 texts fail only their item in embedding requests")
    func malformedTextsKeptPerItem() throws {
        let request = EmbedRequest(
            texts: ["first", "", "third"], malformedTexts: [MalformedText(index: 1, bytes: [0x66, 0xFF, 0xFE])],
            options: EmbedOptions(pooling: .mean))
        let bytes = request.serializedBytes()
        #expect(bytes.starts(with: [0x0A, 0x05] + Array("first".utf8) + [0x0A, 0x03, 0x66, 0xFF, 0xFE]))
        let decoded = try EmbedRequest(serializedBytes: bytes)
        #expect(decoded == request)
        #expect(decoded.texts == ["first", "", "third"])
        #expect(decoded.malformedTexts == [MalformedText(index: 1, bytes: [0x66, 0xFF, 0xFE])])

        let batch = try EmbedBatch(serializedBytes: [0x0A, 0x01, 0xC3])
        #expect(batch.texts == [""])
        #expect(batch.malformedTexts == [MalformedText(index: 0, bytes: [0xC3])])
    }

    @Test("method paths follow /package.Service/Method with the declared call kinds")
    func methods() {
        let all = Methods.EmbeddingService.all + Methods.FineTuneService.all + Methods.WorkerService.all
        #expect(all.count == 16)
        #expect(Set(all.map(\.path)).count == 16)
        #expect(Methods.EmbeddingService.embed.path == "/condense.v1.EmbeddingService/Embed")
        #expect(Methods.EmbeddingService.embed.kind == .unary)
        #expect(Methods.EmbeddingService.health.path == "/condense.v1.EmbeddingService/Health")
        #expect(Methods.EmbeddingService.embedStream.kind == .bidirectionalStreaming)
        #expect(Methods.FineTuneService.createFineTuneJob.kind == .clientStreaming)
        #expect(Methods.FineTuneService.watchJob.kind == .serverStreaming)
        #expect(Methods.FineTuneService.downloadAdapter.kind == .serverStreaming)
        #expect(Methods.WorkerService.connect.path == "/condense.v1.WorkerService/Connect")
        #expect(Methods.WorkerService.connect.kind == .bidirectionalStreaming)
        #expect(Methods.WorkerService.uploadCheckpoint.kind == .clientStreaming)
        for method in all {
            let parts = method.path.split(separator: "/", omittingEmptySubsequences: false)
            #expect(parts.count == 3 && parts[0].isEmpty && parts[1].hasPrefix("condense.v1."), "\(method)")
        }
    }
}

/// Runs the repository's Python scripts when python3 with the PyPI `protobuf` package is installed.
private enum PythonProtobuf {
    static let available: Bool = (try? run(["-c", "import google.protobuf"]).status) == 0

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        process.currentDirectoryURL = WireTestPaths.root
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}
