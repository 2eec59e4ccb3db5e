import ArgumentParser
import CondenseCoordinator
import CondenseEmbedding
import CondenseRPC
import CondenseServer
import CondenseTensor
import CondenseWire
import CondenseWorker
import Dispatch
import Foundation
import Logging

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve embeddings and fine-tuning on one machine: a coordinator with one embedding and one training worker in this process.")

    @Option(help: "Address to listen on, HOST:PORT.")
    var listen: HostPort = HostPort(argument: "127.0.0.1:7433")!
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Directory for jobs, checkpoints and adapters (created if missing); what a previous run left unfinished resumes.")
    var dataDir: String = "condense-data"
    @Option(help: "File holding a shared secret; every call must then send 'authorization: Bearer <secret>'.")
    var authTokenFile: String?
    @OptionGroup var tls: ServerTLSOptions
    @Option(help: "Largest accepted frame in bytes.")
    var maxFrameSize: Int = 16 * 1024 * 1024
    @Option(help: "Seconds a connection may stay silent (or hold half a frame) before it is closed.")
    var idleTimeout: Int = 60
    @Option(help: "Prompt for requests that name none: a built-in name (\(PromptTemplate.namedPromptNames.joined(separator: ", "))) or a template containing {text}.")
    var defaultPrompt: String = "none"
    @Option(help: "Pooling for requests that leave it unspecified: mean, last, eos, weighted-mean.")
    var defaultPooling: String = "mean"
    @Option(help: "Most texts one Embed call may carry (bulk work goes through EmbedStream).")
    var maxTextsPerRequest: Int = 2048
    @Option(help: "Checkpoints kept per fine-tuning job: older ones are deleted once a newer one is stored (0 = keep all; each is about 207 MiB at rank 64 on SmolLM2-135M).")
    var keepCheckpoints = 2
    @OptionGroup var shutdown: ShutdownOptions
    @OptionGroup var operations: OperationsOptions
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        Condense.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "condense.serve")
        let authToken = try authTokenFile.map(readAuthToken)
        let serverTLS = try tls.settings()
        logger.info(
            "OpenBLAS", metadata: ["core": "\(BLASRuntime.coreName)", "selection": "\(BLASRuntime.coreSelection)",
                                   "threads": "\(BLASRuntime.threads)"])
        logger.info(
            "linear kernels", metadata: ["instructions": "\(PackedWeight.instructionSet)", "threads": "\(PackedWeight.threads)"])

        let settings = try embeddingSettings()
        let fineTune: FineTuneCoordinator
        do {
            fineTune = try FineTuneCoordinator(
                stateDirectory: (dataDir as NSString).appendingPathComponent("state"), keepCheckpoints: keepCheckpoints, logger: logger)
            try await fineTune.recover()
        } catch {
            throw CLIFailure("cannot open the job state in \(dataDir): \(error)")
        }
        let host = ModelHost()
        // The model is at hand: options it cannot honour fail the call, as in a single-process server.
        let optionCheck: @Sendable (EmbedOptions?) async throws -> Void = { options in
            guard let served = await host.servedModel else { return }
            _ = try EmbeddingServiceProvider.embeddingOptions(options, settings: settings, embedder: served.embedder)
        }
        let coordinator = CoordinatorService(
            settings: CoordinatorSettings(maxTextsPerRequest: maxTextsPerRequest, modelOptionCheck: optionCheck),
            fineTune: fineTune, logger: logger)
        let rpcMetrics = operations.makeRPCMetrics()  // operations port: nil (no recording) without --metrics-listen
        let server = RPCServer(
            configuration: .init(
                host: listen.host, port: listen.port, maxFrameSize: maxFrameSize, authToken: authToken,
                idleTimeout: .seconds(max(idleTimeout, 60)), shutdownGracePeriod: ShutdownOptions.serverCutoff, tls: serverTLS),
            services: [coordinator, ModelQueryService(host: host, settings: settings)], metrics: rpcMetrics)
        let port = try await server.start()
        logger.notice("listening", metadata: ["address": "\(listen.host):\(port)", "auth": "\(authToken != nil)", "data": "\(dataDir)"])

        // The workers dial this server over loopback, as remote workers would: one code path.
        let modelPath = modelOptions.model
        let workerHost = listen.host == "0.0.0.0" || listen.host == "::" ? "127.0.0.1" : listen.host
        let workDirectory = (dataDir as NSString).appendingPathComponent("training")
        let monitor = Task { await coordinator.monitorHeartbeats() }
        let workers = Task {
            await host.load(path: modelPath)
            guard let served = await host.servedModel else {
                // Nothing can be served: exit so a supervisor notices, rather than report NOT_SERVING forever.
                logger.critical("cannot serve: the model failed to load", metadata: ["model": "\(modelPath)"])
                Foundation.exit(1)
            }
            let embedding = EmbeddingWorker(
                configuration: EmbeddingWorkerConfiguration(
                    connection: CoordinatorConnection(
                        host: workerHost, port: port, workerID: "serve-embed", authToken: authToken, tls: serverTLS?.loopbackClientTLS,
                        threads: BLASRuntime.threads),
                    settings: settings),
                embedder: served.embedder, modelID: served.modelID,
                adapters: .merging(into: modelPath, cacheDirectory: (dataDir as NSString).appendingPathComponent("adapter-cache")),
                logger: logger)
            let training = TrainingWorker(
                configuration: TrainingWorkerConfiguration(
                    connection: CoordinatorConnection(
                        host: workerHost, port: port, workerID: "serve-train", authToken: authToken, tls: serverTLS?.loopbackClientTLS,
                        threads: BLASRuntime.threads),
                    workDirectory: workDirectory),
                weights: .file(modelPath), modelID: served.modelID, logger: logger)
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await embedding.run() }
                group.addTask { try? await training.run() }
            }
        }
        // Operations port (--metrics-listen): ready once the in-process embedding worker has registered.
        let operationsPort = try await operations.start(
            rpc: rpcMetrics, readiness: { await coordinator.readiness() }, metrics: [{ await coordinator.collectMetrics() }],
            logger: logger)
        await ShutdownSignal.wait()
        logger.notice("shutting down: finishing in-flight calls, draining workers (a second signal exits at once)")
        operationsPort?.beginShutdown()
        // The in-process workers are drained like remote ones: the training worker hands its job back
        // at the step it reached, the embedding worker answers the batches it holds.
        await coordinator.shutdown(grace: shutdown.grace)
        workers.cancel()
        monitor.cancel()
        try await server.stop()
        try await operationsPort?.stop()
        logger.notice("shut down")
    }

    private func embeddingSettings() throws -> EmbeddingServiceSettings {
        let prompt: PromptTemplate
        do { prompt = try PromptTemplate(nameOrTemplate: defaultPrompt) } catch { throw CLIFailure("--default-prompt: \(error)") }
        guard let pooling = Pooling(rawValue: defaultPooling) else {
            throw CLIFailure("--default-pooling must be one of \(Pooling.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard maxTextsPerRequest > 0 else { throw CLIFailure("--max-texts-per-request must be positive") }
        guard keepCheckpoints >= 0 else { throw CLIFailure("--keep-checkpoints must be 0 (keep all) or positive") }
        return EmbeddingServiceSettings(defaultPrompt: prompt, defaultPooling: pooling, maxTextsPerRequest: maxTextsPerRequest)
    }

    private func readAuthToken(_ path: String) throws -> String {
        guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLIFailure("cannot read auth token file \(path)")
        }
        let token = contents.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw CLIFailure("auth token file \(path) is empty") }
        return token
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// How long a server winds down after SIGTERM/SIGINT (`serve`, `coordinator`).
struct ShutdownOptions: ParsableArguments {
    @Option(help: "Seconds in-flight calls and draining workers get after SIGTERM/SIGINT before the server closes (a second signal exits at once).")
    var shutdownGrace: Int = 10

    var grace: Duration { .seconds(max(0, shutdownGrace)) }

    /// What the RPC server's own stop allows calls still open after the grace period: just enough
    /// to send their UNAVAILABLE trailers.
    static let serverCutoff: Duration = .milliseconds(500)

    func validate() throws {
        guard shutdownGrace >= 0 else { throw ValidationError("--shutdown-grace must be 0 or more seconds") }
    }
}

/// Resolves on the first SIGINT or SIGTERM, which starts a graceful shutdown; a second one ends the
/// process at once (exit status 128 + the signal's number, as a shell reports a killed process).
enum ShutdownSignal {
    static func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let signals = SignalCount(continuation)
            for signalNumber in [SIGINT, SIGTERM] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler { signals.received(signalNumber) }
                source.resume()
                sources.append(source)
            }
        }
    }

    /// Keeps the signal sources alive for the life of the process.
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []
}

private final class SignalCount: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?
    private var count = 0

    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }

    func received(_ signalNumber: Int32) {
        let (first, pending) = lock.withLock {
            count += 1
            defer { continuation = nil }
            return (count == 1, continuation)
        }
        if first {
            pending?.resume()
        } else {
            FileHandle.standardError.write(Data("second signal: exiting without waiting\n".utf8))
            Foundation.exit(128 + signalNumber)
        }
    }
}
