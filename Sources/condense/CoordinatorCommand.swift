import ArgumentParser
import CondenseCoordinator
import CondenseRPC
import Foundation
import Logging

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Serve the embedding and fine-tuning APIs through workers that dial in (condense worker embed|train).")

    @Option(help: "Address clients and workers connect to, HOST:PORT.")
    var listen: HostPort = HostPort(argument: "127.0.0.1:7433")!
    @Option(help: "Directory for the coordinator's state (created if missing).")
    var state: String
    @Option(help: "File holding a shared secret; every call (clients and workers) must then send 'authorization: Bearer <secret>'.")
    var authTokenFile: String?
    @OptionGroup var tls: ServerTLSOptions
    @Option(help: "Texts per batch handed to a worker.")
    var batchTexts: Int = 64
    @Option(help: "Most texts accepted and not yet delivered over all calls; beyond it calls get RESOURCE_EXHAUSTED.")
    var maxQueuedTexts: Int = 16_384
    @Option(help: "Most texts one EmbedStream may have in flight before its input is read further.")
    var streamWindowTexts: Int = 1024
    @Option(help: "Seconds without any message after which a worker is dropped and its batches re-run elsewhere.")
    var heartbeatTimeout: Int = 15
    @Option(help: "Largest accepted frame in bytes.")
    var maxFrameSize: Int = 16 * 1024 * 1024
    @Option(help: "Checkpoints kept per fine-tuning job: older ones are deleted once a newer one is stored (0 = keep all; each is about 207 MiB at rank 64 on SmolLM2-135M).")
    var keepCheckpoints = 2
    @OptionGroup var shutdown: ShutdownOptions
    @OptionGroup var operations: OperationsOptions
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        Condense.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "condense.coordinator")
        guard batchTexts > 0, maxQueuedTexts > 0, streamWindowTexts > 0, heartbeatTimeout > 0 else {
            throw CLIFailure("--batch-texts, --max-queued-texts, --stream-window-texts and --heartbeat-timeout must be positive")
        }
        guard keepCheckpoints >= 0 else { throw CLIFailure("--keep-checkpoints must be 0 (keep all) or positive") }
        let token = try authTokenFile.map(authToken(fromFile:))
        let serverTLS = try tls.settings()
        // Jobs, their events, checkpoints and adapters live in the state directory; what a previous run
        // left unfinished is queued again.
        let fineTune: FineTuneCoordinator
        do {
            fineTune = try FineTuneCoordinator(
                stateDirectory: state, heartbeatTimeout: .seconds(heartbeatTimeout), keepCheckpoints: keepCheckpoints,
                logger: logger)
            try await fineTune.recover()
        } catch {
            throw CLIFailure("cannot open the job state in \(state): \(error)")
        }
        let service = CoordinatorService(
            settings: CoordinatorSettings(
                batchTexts: batchTexts, maxQueuedTexts: maxQueuedTexts, streamWindowTexts: streamWindowTexts,
                heartbeatTimeout: .seconds(heartbeatTimeout)),
            fineTune: fineTune, logger: logger)
        let rpcMetrics = operations.makeRPCMetrics()
        // Workers keep their session open between batches: the idle timeout must not cut it, so it
        // is well above the heartbeat interval workers use (2 s).
        let server = RPCServer(
            configuration: .init(
                host: listen.host, port: listen.port, maxFrameSize: maxFrameSize, authToken: token,
                idleTimeout: .seconds(max(60, heartbeatTimeout * 4)), shutdownGracePeriod: ShutdownOptions.serverCutoff,
                tls: serverTLS),
            services: [service], metrics: rpcMetrics)
        let port = try await server.start()
        try writeStateFile(address: "\(listen.host):\(port)")
        logger.notice("listening", metadata: ["address": "\(listen.host):\(port)", "state": "\(state)"])
        let operationsPort = try await operations.start(
            rpc: rpcMetrics, readiness: { await service.readiness() }, metrics: [{ await service.collectMetrics() }],
            logger: logger)

        let monitor = Task { await service.monitorHeartbeats() }
        await ShutdownSignal.wait()
        logger.notice("shutting down: finishing in-flight calls, draining workers (a second signal exits at once)")
        operationsPort?.beginShutdown()
        await service.shutdown(grace: shutdown.grace)
        monitor.cancel()
        try await server.stop()
        try await operationsPort?.stop()
        logger.notice("shut down")
    }

    /// `coordinator.json` in the state directory holds the bound address, so tools and tests can find
    /// the port.
    private func writeStateFile(address: String) throws {
        let directory = URL(fileURLWithPath: state, isDirectory: true)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let json = try JSONEncoder().encode(
                CoordinatorStateFile(listen: address, pid: ProcessInfo.processInfo.processIdentifier))
            try json.write(to: directory.appendingPathComponent("coordinator.json"), options: .atomic)
        } catch {
            throw CLIFailure("cannot write the state directory \(state): \(error)")
        }
    }
}

/// `coordinator.json` in the state directory.
struct CoordinatorStateFile: Codable {
    var listen: String
    var pid: Int32
}

/// The shared secret in `path`, trimmed; used by the coordinator and its workers.
func authToken(fromFile path: String) throws -> String {
    guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw CLIFailure("cannot read auth token file \(path)")
    }
    let token = contents.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !token.isEmpty else { throw CLIFailure("auth token file \(path) is empty") }
    return token
}
