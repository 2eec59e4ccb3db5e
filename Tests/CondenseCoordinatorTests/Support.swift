import CondenseCoordinator
import CondenseEmbedding
import CondenseRPC
import CondenseServer
import CondenseWire
import CondenseWorker
import Foundation
import Logging
import Testing

/// Test output shows warnings and errors only.
let quietLogger: Logger = {
    var logger = Logger(label: "condense.coordinator.test")
    logger.logLevel = .warning
    return logger
}()

enum Fixtures {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    /// The tiny random Llama of the model tests (vocabulary 300, hidden 32, 256 positions).
    static let tinyLlama = packageRoot.appendingPathComponent("Tests/CondenseModelTests/Fixtures/tiny-llama").path
    static let tinyEmbedder: Embedder? = try? Embedder.load(modelPath: tinyLlama)

    /// Short texts of varied length (the tiny model has 256 positions).
    static func texts(_ count: Int) -> [String] {
        let words = ["alpha", "river", "stone", "quick", "blue", "cloud", "seven", "lamp", "north", "green", "paper"]
        return (0..<count).map { index in
            let length = 1 + (index * 7) % 9
            return (0..<length).map { words[(index + $0 * 3) % words.count] }.joined(separator: " ") + " \(index)"
        }
    }
}

/// What the single-process path computes for `texts` with default options, batch by batch as the
/// coordinator cuts them (`batchTexts` in input order): the reference the distributed path must
/// reproduce bit for bit.
func localVectors(_ texts: [String], embedder: Embedder, batchTexts: Int) throws -> [Result<[Float], EmbeddingError>] {
    let options = try EmbeddingServiceProvider.embeddingOptions(nil, settings: .init(), embedder: embedder)
    var vectors: [Result<[Float], EmbeddingError>] = []
    var start = 0
    while start < texts.count {
        let end = min(start + batchTexts, texts.count)
        vectors += try embedder.embed(Array(texts[start..<end]), options: options)
        start = end
    }
    return vectors
}

/// Checks that `results` has every index of `expected` once, each bit-identical to the reference.
func expectMatches(_ results: [EmbeddingResult], _ expected: [Result<[Float], EmbeddingError>]) {
    #expect(results.count == expected.count)
    var seen = [Bool](repeating: false, count: expected.count)
    for result in results {
        guard result.index < UInt64(expected.count) else {
            Issue.record("index \(result.index) out of range")
            continue
        }
        let index = Int(result.index)
        #expect(!seen[index], "index \(index) delivered twice")
        seen[index] = true
        switch expected[index] {
        case .success(let vector):
            let values = result.vector?.values ?? []
            #expect(values.map(\.bitPattern) == vector.map(\.bitPattern), "vector \(index) differs from the local run")
        case .failure:
            #expect(result.error != nil, "item \(index) should have failed")
        }
    }
    #expect(seen.allSatisfy { $0 }, "missing indexes: \(seen.indices.filter { !seen[$0] }.prefix(10))")
}

/// A coordinator on 127.0.0.1 (free port) with in-process embedding workers.
final class TestCluster: Sendable {
    let server: RPCServer
    let service: CoordinatorService
    let port: Int
    private let tasks: [Task<Void, Never>]

    private init(server: RPCServer, service: CoordinatorService, port: Int, tasks: [Task<Void, Never>]) {
        self.server = server
        self.service = service
        self.port = port
        self.tasks = tasks
    }

    static func start(settings: CoordinatorSettings = .init(), fineTune: FineTuneCoordinator? = nil) async throws -> TestCluster {
        let service = CoordinatorService(settings: settings, fineTune: fineTune, logger: quietLogger)
        let server = RPCServer(
            configuration: .init(shutdownGracePeriod: .milliseconds(500)), services: [service], logger: quietLogger)
        let port = try await server.start()
        let monitor = Task { await service.monitorHeartbeats() }
        return TestCluster(server: server, service: service, port: port, tasks: [monitor])
    }

    /// Starts an in-process worker; cancel the task to stop it.
    func startWorker(_ id: String, embedder: Embedder, heartbeat: Duration = .milliseconds(100)) -> Task<Void, Never> {
        let worker = EmbeddingWorker(
            configuration: EmbeddingWorkerConfiguration(
                connection: CoordinatorConnection(host: "127.0.0.1", port: port, workerID: id, heartbeatInterval: heartbeat)),
            embedder: embedder, modelID: "tiny-llama", logger: quietLogger)
        return Task { try? await worker.run() }
    }

    /// Waits (up to 10 s) until `count` workers are registered.
    func waitForWorkers(_ count: Int) async throws {
        for _ in 0..<1000 {
            if await service.embeddingWorkerCount == count { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("expected \(count) registered workers, have \(await service.embeddingWorkerCount)")
    }

    func client() async throws -> RPCClient {
        try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
    }

    func stop() async throws {
        for task in tasks { task.cancel() }
        try await server.stop()
    }
}

/// A worker driven by the test: registers, records its assignments and never answers them.
final class StallingWorker: Sendable {
    let client: RPCClient
    let assignments: AsyncStream<Assignment>
    private let session: Task<Void, Never>

    init(port: Int, id: String, kind: WorkerKind = .embed) async throws {
        client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
        let (assignments, received) = AsyncStream<Assignment>.makeStream()
        self.assignments = assignments
        let client = self.client
        session = Task {
            _ = try? await client.bidirectional(
                Methods.WorkerService.connect.path, requestType: WorkerMessage.self, responseType: CoordinatorMessage.self,
                sendRequests: { writer in
                    try await writer.write(WorkerMessage(kind: .registration(Register(workerID: id, kind: kind, models: ["stall"]))))
                    // Keeps the session open without heartbeats until the task ends.
                    try await Task.sleep(for: .seconds(3600))
                },
                handleResponses: { responses in
                    for try await message in responses {
                        if case .assignment(let assignment) = message.kind { received.yield(assignment) }
                    }
                    received.finish()
                })
            received.finish()
        }
    }

    /// The worker dies: its connection closes.
    func kill() async {
        session.cancel()
        await client.close()
    }
}

/// Streams `texts` through EmbedStream in chunks; returns the results and the summary.
func embedStream(
    _ client: RPCClient, _ texts: [String], chunk: Int = 50
) async throws -> (results: [EmbeddingResult], summary: EmbedStreamSummary?) {
    try await client.bidirectional(
        Methods.EmbeddingService.embedStream.path, requestType: EmbedStreamRequest.self, responseType: EmbedStreamResponse.self,
        sendRequests: { writer in
            var start = 0
            while start < texts.count {
                let end = min(start + chunk, texts.count)
                try await writer.write(EmbedStreamRequest(firstIndex: UInt64(start), texts: Array(texts[start..<end])))
                start = end
            }
        },
        handleResponses: { responses in
            var results: [EmbeddingResult] = []
            var summary: EmbedStreamSummary?
            for try await response in responses {
                switch response.kind {
                case .batch(let batch): results += batch.results
                case .summary(let value): summary = value
                case nil: break
                }
            }
            return (results, summary)
        })
}
