import ArgumentParser
import Foundation
import Logging

@main
struct Condense: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "condense",
        abstract: "Text embeddings from decoder-only LLMs: prompt-based pooling, contrastive LoRA fine-tuning, and an RPC service.",
        subcommands: [
            ServeCommand.self, HealthCommand.self, InfoCommand.self, TokenizeCommand.self, EmbedCommand.self,
            EvalCommand.self, AttentionCommand.self, CoordinatorCommand.self, WorkerCommand.self,
            FinetuneGroupCommand.self, AdaptersCommand.self,
            PairsCommand.self,
        ]
    )

    /// Logs go to stderr so stdout stays machine-readable.
    static func bootstrapLogging(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Options shared by commands that load a model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Model: a .gguf file or a Hugging Face directory (config.json + *.safetensors + tokenizer.json).")
    var model: String = DefaultModel.path
}

enum DefaultModel {
    /// `$CONDENSE_MODEL`, else the file `scripts/setup.sh` fetches.
    static var path: String {
        ProcessInfo.processInfo.environment["CONDENSE_MODEL"] ?? "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    }
}

/// `HOST:PORT` as used by --listen and --server.
struct HostPort: ExpressibleByArgument, CustomStringConvertible {
    var host: String
    var port: Int

    init?(argument: String) {
        guard let colon = argument.lastIndex(of: ":"), let port = Int(argument[argument.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(argument[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }

    var description: String { "\(host):\(port)" }
}

/// Prints a one-line error to stderr and exits non-zero; used for expected failures (bad input, unreachable server).
struct CLIFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
