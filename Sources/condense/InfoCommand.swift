import ArgumentParser
import CondenseModel
import CondenseTensor
import CondenseTokenizer
import Foundation

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Describe a model file and the math kernels this machine uses.")

    @OptionGroup var modelOptions: ModelOptions

    func run() throws {
        let loaded: LoadedModel
        do { loaded = try ModelLoader.load(path: modelOptions.model) } catch { throw CLIFailure("\(error)") }
        let config = loaded.weights.config
        let summary = loaded.summary
        let spec = loaded.tokenizer
        let types = summary.tensorTypeCounts.sorted { $0.value > $1.value }.map { "\($0.key) x\($0.value)" }
        let rows: [(String, String)] = [
            ("model", summary.modelName ?? (summary.sourcePath as NSString).lastPathComponent),
            ("file", "\(summary.sourcePath) (\(summary.format), \(formatBytes(summary.fileSize)))"),
            ("architecture", config.architecture.rawValue),
            ("parameters", "\(summary.parameterCount)"),
            ("quantization", types.joined(separator: ", ")),
            ("layers", "\(config.layerCount)"),
            ("hidden size", "\(config.hiddenSize)"),
            ("ffn size", "\(config.intermediateSize)"),
            ("attention heads", "\(config.headCount) (kv \(config.kvHeadCount), head dim \(config.headDim))"),
            ("rope", "theta \(config.ropeTheta)" + (config.ropeScaling.map { ", llama3 scaling x\($0.factor)" } ?? "")),
            ("rms norm eps", "\(config.rmsNormEps)"),
            ("context length", "\(config.maxPositionEmbeddings)"),
            ("tied embeddings", config.tieWordEmbeddings ? "yes" : "no"),
            ("tokenizer", "byte-level BPE, pre-tokenizer \(spec.preTokenizer), vocab \(spec.tokens.count), merges \(spec.merges.count)"),
            ("special tokens", "bos \(describe(spec.bosTokenID, spec)) (add: \(spec.addBOS)), eos \(describe(spec.eosTokenID, spec)) (add: \(spec.addEOS))"),
            ("linear kernels", "\(PackedWeight.summary) (inference)"),
            ("blas", "OpenBLAS core \(BLASRuntime.coreName) (\(BLASRuntime.coreSelection)), \(BLASRuntime.threads) threads"),
            ("blas build", BLASRuntime.configuration),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        for (key, value) in rows {
            print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
        }
    }

    private func describe(_ id: Int32?, _ spec: TokenizerSpec) -> String {
        guard let id else { return "none" }
        let index = Int(id)
        return spec.tokens.indices.contains(index) ? "\(id) \(spec.tokens[index])" : "\(id)"
    }
}

func formatBytes(_ bytes: Int) -> String {
    let mib = Double(bytes) / 1_048_576
    return mib >= 1024 ? String(format: "%.2f GiB", mib / 1024) : String(format: "%.1f MiB", mib)
}
