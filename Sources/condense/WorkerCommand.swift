import ArgumentParser
import CondenseEmbedding
import CondenseModel
import CondenseRPC
import CondenseTraining
import CondenseServer
import CondenseTensor
import CondenseWorker
import Foundation
import Logging

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Run a worker that dials a coordinator and takes its assignments.",
        subcommands: [WorkerEmbedCommand.self, WorkerTrainCommand.self])
}

struct WorkerEmbedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed", abstract: "Embedding worker: runs the coordinator's EmbedBatch assignments.")

    @OptionGroup var connection: WorkerConnectionOptions
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Prompt for requests that name none (same on every worker): a built-in name (\(PromptTemplate.namedPromptNames.joined(separator: ", "))) or a template containing {text}.")
    var defaultPrompt: String = "none"
    @Option(help: "Pooling for requests that leave it unspecified (same on every worker): mean, last, eos, weighted-mean.")
    var defaultPooling: String = "mean"
    @Option(help: "Scratch directory; adapters fetched from the coordinator go to its adapters/ folder, emptied at start (default: a folder in the system temp dir).")
    var workDir: String?
    @Option(help: "Most fine-tuned adapters kept merged in memory, each a full copy of the model's weights (about 550 MB on SmolLM2-135M).")
    var maxAdapters = 2
    @OptionGroup var operations: OperationsOptions
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        Condense.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "condense.worker")
        guard maxAdapters > 0 else { throw CLIFailure("--max-adapters must be positive") }
        let prompt: PromptTemplate
        do { prompt = try PromptTemplate(nameOrTemplate: defaultPrompt) } catch { throw CLIFailure("--default-prompt: \(error)") }
        guard let pooling = Pooling(rawValue: defaultPooling) else {
            throw CLIFailure("--default-pooling must be one of \(Pooling.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let connection = try self.connection.resolved()
        let id = connection.workerID
        logger.info(
            "OpenBLAS", metadata: ["core": "\(BLASRuntime.coreName)", "selection": "\(BLASRuntime.coreSelection)",
                                   "threads": "\(BLASRuntime.threads)"])
        logger.info(
            "linear kernels", metadata: ["instructions": "\(PackedWeight.instructionSet)", "threads": "\(PackedWeight.threads)"])

        // Up before the model loads: liveness holds while it loads, readiness waits for the session.
        let activity = WorkerActivity(kind: .embed)
        let operationsPort = try await operations.start(
            readiness: { activity.readiness() }, metrics: [{ activity.collectMetrics() }], logger: logger)

        let scratch = workDir ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("condense-embed-\(id)")
        // Loaded the way `condense serve` loads it, so both compute the same vectors.
        let host = ModelHost(logger: logger)
        await host.load(path: modelOptions.model)
        guard let served = await host.servedModel else { throw CLIFailure("cannot load the model \(modelOptions.model)") }

        let worker = EmbeddingWorker(
            configuration: EmbeddingWorkerConfiguration(
                connection: connection, settings: EmbeddingServiceSettings(defaultPrompt: prompt, defaultPooling: pooling)),
            embedder: served.embedder, modelID: served.modelID,
            adapters: .merging(
                into: modelOptions.model, cacheDirectory: (scratch as NSString).appendingPathComponent("adapters"), capacity: maxAdapters),
            activity: activity, logger: logger)
        logger.notice("worker starting", metadata: ["worker": "\(id)", "coordinator": "\(self.connection.coordinator)", "model": "\(served.modelID)"])
        try await runUntilShutdown(operationsPort: operationsPort) { try await worker.run(until: $0) }
    }
}

struct WorkerTrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Training worker: runs the coordinator's fine-tuning jobs, one at a time.")

    @OptionGroup var connection: WorkerConnectionOptions
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Scratch directory for job checkpoints before they are uploaded (default: a folder in the system temp dir).")
    var workDir: String?
    @Option(help: "Most tokens per forward/backward pass for jobs that set no micro-batch (about 0.8 MB each on SmolLM2-135M).")
    var microBatch = FineTuneOptions.defaultMicroBatchTokens
    @OptionGroup var operations: OperationsOptions
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        Condense.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "condense.worker.train")
        guard microBatch > 0 else { throw CLIFailure("--micro-batch must be positive") }
        let connection = try self.connection.resolved()
        let id = connection.workerID
        let directory = workDir ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("condense-train-\(id)")
        // Up before the model loads: liveness holds while it loads, readiness waits for the session.
        let activity = WorkerActivity(kind: .train)
        let operationsPort = try await operations.start(
            readiness: { activity.readiness() }, metrics: [{ activity.collectMetrics() }], logger: logger)
        let model: LoadedModel
        do { model = try ModelLoader.load(path: modelOptions.model) } catch { throw CLIFailure("\(error)") }
        let modelID = URL(fileURLWithPath: modelOptions.model).lastPathComponent
        let worker = TrainingWorker(
            configuration: TrainingWorkerConfiguration(connection: connection, workDirectory: directory, microBatchTokens: microBatch),
            model: model, modelID: modelID, activity: activity, logger: logger)
        logger.notice("training worker starting", metadata: ["worker": "\(id)", "coordinator": "\(self.connection.coordinator)", "model": "\(modelID)"])
        try await runUntilShutdown(operationsPort: operationsPort) { try await worker.run(until: $0) }
    }
}

/// How a worker reaches its coordinator: the options every worker kind takes.
struct WorkerConnectionOptions: ParsableArguments {
    @Option(help: "The coordinator's address, HOST:PORT.")
    var coordinator: HostPort
    @Option(help: "Worker id, unique among the coordinator's workers (default: host name and process id).")
    var workerID: String?
    @Option(help: "File holding the coordinator's shared secret.")
    var authTokenFile: String?
    @OptionGroup var tls: ClientTLSOptions
    @Option(help: "Seconds between heartbeats (keep well under the coordinator's --heartbeat-timeout).")
    var heartbeatInterval: Int = 2

    /// The connection these options describe; the worker id defaults to host name and process id.
    func resolved() throws -> CoordinatorConnection {
        guard heartbeatInterval > 0 else { throw CLIFailure("--heartbeat-interval must be positive") }
        return CoordinatorConnection(
            host: coordinator.host, port: coordinator.port,
            workerID: workerID ?? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)",
            authToken: try authTokenFile.map(authToken(fromFile:)), tls: try tls.rpcSettings(),
            heartbeatInterval: .seconds(heartbeatInterval),
            threads: BLASRuntime.threads)
    }
}

/// Runs a worker until it stops or SIGINT/SIGTERM arrives. The signal shuts the worker down gracefully
/// (an embedding worker delivers the batches it holds; a training worker finishes its step and hands
/// the job back with a checkpoint of it), then the process exits 0; a second signal exits at once.
/// The operations port reports the shutdown (/healthz 503) while the worker winds down, and closes after it.
private func runUntilShutdown(
    operationsPort: OperationsServer?, _ work: @escaping @Sendable (WorkerShutdown) async throws -> Void
) async throws {
    let shutdown = WorkerShutdown()
    let stop = Task {
        await ShutdownSignal.wait()
        Logger(label: "condense.worker").notice("shutting down: finishing work in hand (a second signal exits at once)")
        operationsPort?.beginShutdown()
        shutdown.begin()
    }
    defer { stop.cancel() }
    do {
        try await work(shutdown)
    } catch {
        throw CLIFailure("\(error)")
    }
    try await operationsPort?.stop()
}
