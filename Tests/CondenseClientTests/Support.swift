import CondenseClient
import CondenseCoordinator
import CondenseEmbedding
import CondenseRPC
import CondenseServer
import CondenseWire
import CondenseWorker
import Foundation
import Logging
import Testing

/// One test at a time: references are computed on the test's own threads, and an embedding worker
/// whose heartbeats are starved that way would be dropped as silent.
@Suite(.serialized) struct ClientSuites {}

/// Test output shows warnings and errors only.
let quietLogger: Logger = {
    var logger = Logger(label: "condense.client.test")
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
/// coordinator cuts them (`batchTexts` in input order): the reference the client's results must match
/// bit for bit.
func localVectors(
    _ texts: [String], embedder: Embedder, batchTexts: Int, normalize: Bool = true
) throws -> [Result<[Float], EmbeddingError>] {
    var options = try EmbeddingServiceProvider.embeddingOptions(nil, settings: .init(), embedder: embedder)
    options.normalize = normalize
    var vectors: [Result<[Float], EmbeddingError>] = []
    var start = 0
    while start < texts.count {
        let end = min(start + batchTexts, texts.count)
        vectors += try embedder.embed(Array(texts[start..<end]), options: options)
        start = end
    }
    return vectors
}

/// Bit patterns, so that equal means bit-identical (and NaN equals itself).
func bits(_ vector: [Float]) -> [UInt32] { vector.map(\.bitPattern) }

/// A coordinator on 127.0.0.1 (free port) with a fine-tuning state directory and in-process
/// embedding workers.
final class TestCluster: Sendable {
    let server: RPCServer
    let service: CoordinatorService
    let port: Int
    let stateDirectory: String
    private let monitor: Task<Void, Never>

    private init(server: RPCServer, service: CoordinatorService, port: Int, stateDirectory: String, monitor: Task<Void, Never>) {
        self.server = server
        self.service = service
        self.port = port
        self.stateDirectory = stateDirectory
        self.monitor = monitor
    }

    static func start(settings: CoordinatorSettings = .init(), authToken: String? = nil) async throws -> TestCluster {
        let stateDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("condense-client-\(UUID().uuidString)").path
        let fineTune = try FineTuneCoordinator(stateDirectory: stateDirectory, logger: quietLogger)
        try await fineTune.recover()
        let service = CoordinatorService(settings: settings, fineTune: fineTune, logger: quietLogger)
        let server = RPCServer(
            configuration: .init(authToken: authToken, shutdownGracePeriod: .milliseconds(500)), services: [service],
            logger: quietLogger)
        let port = try await server.start()
        let monitor = Task { await service.monitorHeartbeats() }
        return TestCluster(server: server, service: service, port: port, stateDirectory: stateDirectory, monitor: monitor)
    }

    /// Starts an in-process embedding worker; cancel the task to stop it.
    func startWorker(_ id: String, embedder: Embedder) -> Task<Void, Never> {
        let worker = EmbeddingWorker(
            configuration: EmbeddingWorkerConfiguration(
                connection: CoordinatorConnection(host: "127.0.0.1", port: port, workerID: id, heartbeatInterval: .milliseconds(100))),
            embedder: embedder, modelID: "tiny-llama", logger: quietLogger)
        return Task { try? await worker.run() }
    }

    /// Waits (up to 10 s) until `count` embedding workers are registered.
    func waitForWorkers(_ count: Int) async throws {
        for _ in 0..<1000 {
            if await service.embeddingWorkerCount == count { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("expected \(count) registered workers, have \(await service.embeddingWorkerCount)")
    }

    /// A client with quick reconnects, so that tests of lost connections stay short.
    func client(authToken: String? = nil) -> CondenseClient {
        CondenseClient(
            host: "127.0.0.1", port: port, authToken: authToken,
            watchRetry: .init(maxAttempts: 5, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(100)), logger: quietLogger)
    }

    func stop() async throws {
        monitor.cancel()
        try await server.stop()
        try? FileManager.default.removeItem(atPath: stateDirectory)
    }
}

/// A training worker driven by the test: it registers as TRAIN, hands assignments to the test, and
/// sends the events and uploads the test gives it.
final class ScriptedTrainingWorker: Sendable {
    let client: RPCClient
    let messages: AsyncStream<CoordinatorMessage>
    private let outgoing: AsyncStream<WorkerMessage>.Continuation
    private let session: Task<Void, Never>

    init(port: Int, id: String) async throws {
        client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
        let (messages, received) = AsyncStream<CoordinatorMessage>.makeStream()
        let (outbox, outgoing) = AsyncStream<WorkerMessage>.makeStream()
        self.messages = messages
        self.outgoing = outgoing
        let client = self.client
        session = Task {
            _ = try? await client.bidirectional(
                Methods.WorkerService.connect.path, requestType: WorkerMessage.self, responseType: CoordinatorMessage.self,
                sendRequests: { writer in
                    try await writer.write(WorkerMessage(kind: .registration(Register(workerID: id, kind: .train, models: ["tiny"]))))
                    for await message in outbox { try await writer.write(message) }
                    try await Task.sleep(for: .seconds(3600))
                },
                handleResponses: { responses in
                    for try await message in responses { received.yield(message) }
                    received.finish()
                })
            received.finish()
        }
    }

    func send(_ kind: JobEvent.Kind, job: String) {
        outgoing.yield(WorkerMessage(kind: .trainEvent(JobEvent(jobID: job, kind: kind))))
    }

    func nextAssignment() async throws -> TrainJob {
        for await message in messages {
            if case .assignment(let assignment) = message.kind, case .train(let job) = assignment.work { return job }
        }
        throw RPCError(code: .unavailable, message: "session ended before an assignment")
    }

    /// Uploads `files` as a checkpoint (or the final adapter) of `job`.
    func upload(job: String, step: UInt32, final: Bool, files: [String: [UInt8]]) async throws -> UploadCheckpointResponse {
        try await client.clientStreaming(
            Methods.WorkerService.uploadCheckpoint.path, requestType: UploadCheckpointRequest.self,
            responseType: UploadCheckpointResponse.self
        ) { writer in
            try await writer.write(UploadCheckpointRequest(kind: .header(CheckpointHeader(jobID: job, step: step, isFinal: final))))
            for (name, bytes) in files.sorted(by: { $0.key < $1.key }) {
                try await writer.write(UploadCheckpointRequest(kind: .chunk(FileChunk(
                    path: name, offset: 0, data: bytes, last: true, fileSize: UInt64(bytes.count)))))
            }
        }
    }

    func kill() async {
        outgoing.finish()
        session.cancel()
        await client.close()
    }
}

/// The status code a call failed with; nil when it succeeded.
func statusCode(_ body: () async throws -> Void) async -> StatusCode? {
    do {
        try await body()
        return nil
    } catch let error as CondenseClientError {
        return error.code
    } catch {
        Issue.record("not a CondenseClientError: \(error)")
        return nil
    }
}
