import ArgumentParser
import CondenseEmbedding
import CondenseTraining
import CondenseWire

/// Training settings shared by `condense finetune` (local) and `condense finetune submit`, so both
/// take the same flags. Left out, local mode uses the default named in the help, and a submitted job
/// the server's default: the same values (Protos/services.md), except that the server saves no
/// intermediate checkpoints unless asked.
struct FineTuneHyperparameterOptions: ParsableArguments {
    @Option(help: "Optimizer steps (default: one epoch). Sets the learning-rate decay.")
    var steps: Int?
    @Option(help: "Passes over the pairs, instead of --steps.")
    var epochs: Int?
    @Option(help: "Pairs per step; each text's negatives are the other pairs' positives. (default: \(FineTuneOptions.defaultBatchSize))")
    var batch: Int?
    @Option(help: "Peak learning rate (AdamW). (default: \(LocalDefault.learningRate))")
    var lr: Float?
    @Option(help: "Linear warmup steps, then linear decay to 0 at the last step. (default: \(LocalDefault.warmup))")
    var warmup: Int?
    @Option(help: "LoRA rank. (default: \(LocalDefault.rank))")
    var rank: Int?
    @Option(help: "LoRA alpha (scaling alpha/rank). (default: \(LocalDefault.alpha))")
    var alpha: Float?
    @Option(help: "LoRA dropout. (default: \(LocalDefault.dropout))")
    var dropout: Float?
    @Option(help: "Adapted projections, comma-separated: \(LoRATarget.allCases.map(\.rawValue).joined(separator: ",")). (default: \(LoRATarget.defaultTargets.map(\.rawValue).joined(separator: ",")))")
    var targets: String?
    @Option(help: "InfoNCE temperature. (default: \(LocalDefault.temperature))")
    var temperature: Float?
    @Option(help: "Margin subtracted from each positive's cosine. (default: 0.0)")
    var margin: Float?
    @Option(help: "Prompt name (\(PromptTemplate.namedPromptNames.joined(separator: ", "))) or a template containing {text} once. (default: \(LocalDefault.prompt))")
    var prompt: String?
    @Option(help: "Pooling: \(CondenseEmbedding.Pooling.allCases.map(\.rawValue).joined(separator: ", ")). (default: mean)")
    var pooling: String?
    @Flag(inversion: .prefixedNo, help: "Record L2 normalization in the recipe for inference (training compares by cosine). (default: --normalize)")
    var normalize: Bool?
    @Option(help: "Token limit of each raw text, before the prompt is added. (default: \(FineTuneOptions.defaultMaxTokens))")
    var maxTokens: Int?
    @Option(help: "Seed of the adapter's initialisation, the data order, dropout and augmentations. (default: \(LocalDefault.seed))")
    var seed: UInt64?
    @Option(help: "Save a checkpoint every N steps (0: only at the end). (default: \(LocalDefault.checkpointEvery) locally, 0 on a server)")
    var checkpointEvery: Int?

    /// What local mode uses for a setting left out (the server's defaults are the same, Protos/services.md,
    /// except checkpoints).
    enum LocalDefault {
        static let learningRate: Float = 5e-5
        static let warmup = 100
        static let rank = 64
        static let alpha: Float = 16
        static let dropout: Float = 0.05
        static let temperature: Float = 0.2
        static let prompt = "cluster1"
        static let seed: UInt64 = 42
        static let checkpointEvery = 500
    }

    func parsedPooling() throws -> CondenseEmbedding.Pooling? {
        try pooling.map { name in
            guard let pooling = CondenseEmbedding.Pooling(rawValue: name) else {
                throw CLIFailure("unknown pooling '\(name)' (use \(CondenseEmbedding.Pooling.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return pooling
        }
    }

    func parsedPrompt() throws -> PromptTemplate? {
        do { return try prompt.map { name throws(EmbeddingError) in try PromptTemplate(nameOrTemplate: name) } } catch {
            throw CLIFailure("\(error)")
        }
    }

    /// `q` and `q_proj` both name the query projection.
    func parsedTargets() throws -> [LoRATarget]? {
        try targets.map { list in
            var parsed: [LoRATarget] = []
            for name in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
                guard let target = LoRATarget(rawValue: name.hasSuffix("_proj") ? String(name.dropLast(5)) : name) else {
                    throw CLIFailure("unknown LoRA target '\(name)' (use \(LoRATarget.allCases.map(\.rawValue).joined(separator: ",")))")
                }
                parsed.append(target)
            }
            return parsed
        }
    }

    /// The wire form for a submitted job: only the settings given; the rest stay zero (server default).
    func wireHyperparameters() throws -> Hyperparameters {
        guard steps == nil || epochs == nil else { throw CLIFailure("give --steps or --epochs, not both") }
        var parameters = Hyperparameters()
        if let steps { parameters.duration = .steps(try Self.count(steps, "--steps")) }
        if let epochs { parameters.duration = .epochs(try Self.count(epochs, "--epochs")) }
        parameters.batchSize = try batch.map { try Self.count($0, "--batch") } ?? 0
        parameters.learningRate = lr ?? 0
        parameters.warmupSteps = try warmup.map { try Self.count($0, "--warmup", allowZero: true) } ?? 0
        parameters.loraRank = try rank.map { try Self.count($0, "--rank") } ?? 0
        parameters.loraAlpha = alpha ?? 0
        parameters.loraDropout = dropout
        parameters.targetModules = try parsedTargets()?.map(\.moduleName) ?? []
        parameters.temperature = temperature ?? 0
        parameters.margin = margin ?? 0
        if let template = try parsedPrompt() {
            parameters.prompt = template.name.map { .promptName($0) } ?? .promptTemplate(prompt ?? "")
        }
        parameters.pooling = switch try parsedPooling() {
        case nil: .unspecified
        case .mean: .mean
        case .last: .last
        case .eos: .eos
        case .weightedMean: .weightedMean
        }
        parameters.normalize = normalize
        parameters.maxTokens = try maxTokens.map { try Self.count($0, "--max-tokens") } ?? 0
        parameters.seed = seed
        parameters.checkpointEvery = try checkpointEvery.map { try Self.count($0, "--checkpoint-every", allowZero: true) } ?? 0
        return parameters
    }

    private static func count(_ value: Int, _ flag: String, allowZero: Bool = false) throws -> UInt32 {
        guard value >= (allowZero ? 0 : 1), let count = UInt32(exactly: value) else {
            throw CLIFailure("\(flag) must be \(allowZero ? "0 or more" : "at least 1"), got \(value)")
        }
        return count
    }
}
