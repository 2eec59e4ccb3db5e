import CondenseEmbedding
import CondenseTraining
import CondenseWire

/// `Hyperparameters` of a TrainJob as `FineTuneOptions`: zero or unset fields take the defaults of
/// Protos/services.md, which are those of `condense finetune`.
enum TrainingJobOptions {
    static let defaultPrompt = "cluster1"

    static func options(
        _ parameters: Hyperparameters, outputDirectory: String, microBatchTokens: Int, resume: Bool
    ) throws(FineTuneError) -> FineTuneOptions {
        var targets: [LoRATarget] = []
        for name in parameters.targetModules {
            let short = name.hasSuffix("_proj") ? String(name.dropLast(5)) : name
            guard let target = LoRATarget(rawValue: short) else { throw .invalidSetting("unknown target module '\(name)'") }
            targets.append(target)
        }
        let lora = LoRAConfiguration(
            rank: parameters.loraRank == 0 ? 64 : Int(parameters.loraRank),
            alpha: parameters.loraAlpha == 0 ? 16 : parameters.loraAlpha,
            dropout: parameters.loraDropout ?? 0.05,
            targets: targets.isEmpty ? LoRATarget.defaultTargets : targets)
        let prompt: PromptTemplate
        do {
            switch parameters.prompt {
            case .promptName(let name): prompt = try PromptTemplate(nameOrTemplate: name)
            case .promptTemplate(let template): prompt = try PromptTemplate(nameOrTemplate: template)
            case nil: prompt = try PromptTemplate(nameOrTemplate: defaultPrompt)
            }
        } catch {
            throw .invalidSetting(error.description)
        }
        let pooling: CondenseEmbedding.Pooling = switch parameters.pooling {
        case .unspecified, .mean: .mean
        case .last: .last
        case .eos: .eos
        case .weightedMean: .weightedMean
        }
        let maxTokens = parameters.maxTokens == 0 ? FineTuneOptions.defaultMaxTokens : Int(parameters.maxTokens)
        // micro_batch_size counts pairs; the trainer budgets tokens: two texts of at most max_tokens each.
        let budget = parameters.microBatchSize == 0 ? microBatchTokens : Int(parameters.microBatchSize) * 2 * maxTokens
        let training = TrainingConfiguration(
            lora: lora,
            learningRate: parameters.learningRate == 0 ? 5e-5 : parameters.learningRate,
            warmupSteps: parameters.warmupSteps == 0 ? 100 : Int(parameters.warmupSteps),
            temperature: parameters.temperature == 0 ? 0.2 : parameters.temperature,
            margin: parameters.margin, pooling: pooling, microBatchTokens: budget, seed: parameters.seed ?? 42)
        let (steps, epochs): (Int?, Int?) = switch parameters.duration {
        case .steps(let steps): (Int(steps), nil)
        case .epochs(let epochs): (nil, Int(epochs))
        case nil: (nil, nil)
        }
        return FineTuneOptions(
            training: training,
            embedding: EmbeddingOptions(prompt: prompt, pooling: pooling, normalize: parameters.normalize ?? true, maxTokens: maxTokens),
            batchSize: parameters.batchSize == 0 ? FineTuneOptions.defaultBatchSize : Int(parameters.batchSize),
            steps: steps, epochs: epochs, checkpointEvery: Int(parameters.checkpointEvery),
            outputDirectory: outputDirectory, resume: resume)
    }
}
