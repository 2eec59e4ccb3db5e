import ArgumentParser
import CondenseEmbedding
import CondenseRPC
import CondenseServer
import CondenseTensor
import Dispatch
import Foundation
import Logging

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve the embedding API on one machine (RPC over TCP, see Protos/README.md).")

    @Option(help: "Address to listen on, HOST:PORT.")
    var listen: HostPort = HostPort(argument: "127.0.0.1:7433")!
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "File holding a shared secret; every call must then send 'authorization: Bearer <secret>'.")
    var authTokenFile: String?
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
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        Condense.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "condense.serve")
        let authToken = try authTokenFile.map(readAuthToken)
        logger.info(
            "OpenBLAS", metadata: ["core": "\(BLASRuntime.coreName)", "selection": "\(BLASRuntime.coreSelection)",
                                   "threads": "\(BLASRuntime.threads)"])

        let settings = try embeddingSettings()
        let host = ModelHost()
        let server = RPCServer(
            configuration: .init(
                host: listen.host, port: listen.port, maxFrameSize: maxFrameSize, authToken: authToken,
                idleTimeout: .seconds(idleTimeout)),
            services: [EmbeddingServiceProvider(host: host, settings: settings)])
        let port = try await server.start()
        logger.notice("listening", metadata: ["address": "\(listen.host):\(port)", "auth": "\(authToken != nil)"])

        let modelPath = modelOptions.model
        let loading = Task { await host.load(path: modelPath) }
        await ShutdownSignal.wait()
        logger.notice("shutting down: draining in-flight calls")
        loading.cancel()
        try await server.stop()
    }

    private func embeddingSettings() throws -> EmbeddingServiceSettings {
        let prompt: PromptTemplate
        do { prompt = try PromptTemplate(nameOrTemplate: defaultPrompt) } catch { throw CLIFailure("--default-prompt: \(error)") }
        guard let pooling = Pooling(rawValue: defaultPooling) else {
            throw CLIFailure("--default-pooling must be one of \(Pooling.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard maxTextsPerRequest > 0 else { throw CLIFailure("--max-texts-per-request must be positive") }
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

/// Resolves on the first SIGINT or SIGTERM.
enum ShutdownSignal {
    static func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = ResumeOnce(continuation)
            for signalNumber in [SIGINT, SIGTERM] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler { once.resume() }
                source.resume()
                sources.append(source)
            }
        }
    }

    /// Keeps the signal sources alive for the life of the process.
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []
}

private final class ResumeOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?
    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }
    func resume() {
        lock.lock()
        let pending = continuation
        continuation = nil
        lock.unlock()
        pending?.resume()
    }
}
