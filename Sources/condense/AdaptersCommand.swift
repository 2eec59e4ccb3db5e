import ArgumentParser
import CondenseClient
import CondenseWire
import Foundation

/// `condense adapters list|download`: the adapters a coordinator holds.
struct AdaptersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adapters",
        abstract: "List or download the LoRA adapters of a coordinator.",
        subcommands: [AdaptersListCommand.self, AdaptersDownloadCommand.self])
}

struct AdaptersListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List adapters, newest first: id, base model, job, rank/alpha, pooling, size, created.")

    @OptionGroup var serverOptions: ServerOptions

    func run() async throws {
        let adapters = try await withServer(try serverOptions.client()) { client in try await client.listAdapters() }
        for adapter in adapters {
            let pooling = switch adapter.pooling {
            case .unspecified: "default"
            case .mean: "mean"
            case .last: "last"
            case .eos: "eos"
            case .weightedMean: "weighted-mean"
            }
            print([adapter.adapterID, adapter.baseModel.isEmpty ? "-" : adapter.baseModel, adapter.jobID.isEmpty ? "-" : adapter.jobID,
                   "r\(adapter.loraRank)/a\(adapter.loraAlpha.formatted())", pooling, "\(adapter.sizeBytes) B",
                   timestamp(adapter.createdUnixMs)].joined(separator: "\t"))
        }
    }
}

struct AdaptersDownloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "download",
        abstract: "Download an adapter's PEFT directory (load it with --adapter DIR or peft.PeftModel.from_pretrained).")

    @OptionGroup var serverOptions: ServerOptions
    @Argument(help: "Adapter id.")
    var adapter: String
    @Option(help: "Directory to write the files into (created when missing; files of the same name are replaced).")
    var out: String

    func run() async throws {
        let files = try await withServer(try serverOptions.client()) { client in try await client.downloadAdapter(adapter, to: out) }
        FileHandle.standardError.write(Data("\(adapter): \(files.joined(separator: ", ")) written to \(out)\n".utf8))
    }
}
