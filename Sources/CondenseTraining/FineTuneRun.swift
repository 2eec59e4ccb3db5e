import CondenseEmbedding
import CondenseModel
import CondenseTokenizer
import Foundation

/// Why a fine-tuning run could not start, continue or finish.
public enum FineTuneError: Error, Equatable, Sendable, CustomStringConvertible {
    case pairsFile(PairsFileError)
    /// Fewer than 2 usable pairs (InfoNCE needs in-batch negatives).
    case notEnoughPairs(usable: Int, skipped: Int)
    case batchLargerThanPairs(batch: Int, pairs: Int)
    case invalidSetting(String)
    case model(String)
    /// A text of the data that the model cannot take (after prompt and truncation).
    case preparation(pair: Int, reason: String)
    case training(TrainingError)
    case checkpoint(path: String, reason: String)
    /// The output directory holds checkpoints of an earlier run and `resume` was not asked for.
    case outputInUse(directory: String, checkpoint: String)
    case nothingToResume(directory: String)
    /// The checkpoint was trained with other settings; each entry reads "name: saved → requested".
    case resumeMismatch(checkpoint: String, differences: [String])

    public var description: String {
        switch self {
        case let .pairsFile(error): "\(error)"
        case let .notEnoughPairs(usable, skipped):
            "no usable pairs: \(usable) usable (\(skipped) skipped with an empty side); a step needs at least 2"
        case let .batchLargerThanPairs(batch, pairs): "batch of \(batch) pairs is larger than the \(pairs) usable pairs"
        case let .invalidSetting(reason): reason
        case let .model(reason): reason
        case let .preparation(pair, reason): "pair \(pair): \(reason)"
        case let .training(error): "\(error)"
        case let .checkpoint(path, reason): "checkpoint \(path): \(reason)"
        case let .outputInUse(directory, checkpoint):
            "\(directory) already holds \(checkpoint) of an earlier run: pass --resume to continue it, or choose another --out"
        case let .nothingToResume(directory): "--resume: no complete checkpoint in \(directory)"
        case let .resumeMismatch(checkpoint, differences):
            "cannot resume from \(checkpoint): it was trained with other settings (saved → requested): "
                + differences.joined(separator: "; ")
        }
    }
}

/// Everything a local fine-tuning run is asked to do.
public struct FineTuneOptions: Sendable {
    /// Hyperparameters; `totalSteps` and `pooling` are set by the run (from `steps`/`epochs` and `embedding`).
    public var training: TrainingConfiguration
    /// How texts are prompted, truncated and pooled: the same preparation as inference
    /// (`normalize` only goes into the recipe; the loss compares by cosine).
    public var embedding: EmbeddingOptions
    public var batchSize: Int
    /// Optimizer steps; nil = `epochs` epochs.
    public var steps: Int?
    /// Passes over the data when `steps` is nil (default 1).
    public var epochs: Int?
    /// Noise on the positive side of each pair.
    public var augmentation: NoiseAugmentation
    /// Save a checkpoint every this many steps (0 = only at the end).
    public var checkpointEvery: Int
    /// Checkpoints kept in the output directory: after each one is written, all but the newest
    /// `keepCheckpoints` are deleted (0 = keep all).
    public var keepCheckpoints: Int
    public var outputDirectory: String
    /// Continue from the newest complete checkpoint in `outputDirectory`.
    public var resume: Bool

    /// Batch size of the reference code.
    public static let defaultBatchSize = 120
    /// Token limit per raw text of the reference code's training.
    public static let defaultMaxTokens = 100
    /// Tokens per micro-batch: about 1.6 GB of activations on SmolLM2-135M at rank 64 (≈ 0.8 MB a token),
    /// ~20 prompted texts of 100 tokens; beyond this, bigger GEMMs gain little while memory keeps growing.
    public static let defaultMicroBatchTokens = 2048

    public init(
        training: TrainingConfiguration = TrainingConfiguration(microBatchTokens: FineTuneOptions.defaultMicroBatchTokens),
        embedding: EmbeddingOptions = EmbeddingOptions(maxTokens: FineTuneOptions.defaultMaxTokens),
        batchSize: Int = FineTuneOptions.defaultBatchSize, steps: Int? = nil, epochs: Int? = nil,
        augmentation: NoiseAugmentation = .off, checkpointEvery: Int = 0, keepCheckpoints: Int = 0, outputDirectory: String,
        resume: Bool = false
    ) {
        self.training = training
        self.embedding = embedding
        self.batchSize = batchSize
        self.steps = steps
        self.epochs = epochs
        self.augmentation = augmentation
        self.checkpointEvery = checkpointEvery
        self.keepCheckpoints = keepCheckpoints
        self.outputDirectory = outputDirectory
        self.resume = resume
    }
}

/// What the run reports after each step.
public struct FineTuneProgress: Sendable {
    /// Steps completed, 1-based (this step included).
    public var step: Int
    public var totalSteps: Int
    /// 0-based epoch of this step's batch.
    public var epoch: Int
    public var loss: Double
    public var learningRate: Float
    public var gradientNorm: Float
    /// Pairs per second since this process started training (resumed steps excluded).
    public var pairsPerSecond: Double
    public var secondsRemaining: Double
    /// Checkpoint directory written after this step, if any.
    public var checkpoint: String?
}

/// Local contrastive LoRA fine-tuning: batches of pairs (no text twice in a batch, seeded shuffle per
/// epoch, optional noise on the positives), prepared exactly as `Embedder` prepares texts for inference,
/// trained with `LlamaTrainer`; checkpoints under `OUT/checkpoint-STEP/` (PEFT adapter, embedding recipe,
/// resume state), a per-step `OUT/training_log.jsonl`, and the final adapter in `OUT/` itself.
///
/// A run resumed from a checkpoint continues with the same adapter, optimizer moments, step count and
/// data position, so it ends with the same parameters, bit for bit, as an uninterrupted run.
public final class FineTuneRun {
    public let options: FineTuneOptions
    public let hyperparameters: FineTuneHyperparameters
    public var totalSteps: Int { hyperparameters.totalSteps }
    public var completedSteps: Int { trainer.completedSteps }
    /// The checkpoint this run continued from.
    public let resumedFrom: String?
    public let trainer: LlamaTrainer

    private let pairs: [TextPair]
    private let preparer: TextPreparer
    private let batcher: PairBatcher
    private var position: DataPosition
    private let baseModel: String

    /// - Parameters:
    ///   - model: the loaded base model (weights and tokenizer).
    ///   - baseModel: its name as recorded in the adapter (`base_model_name_or_path`).
    public init(model: LoadedModel, baseModel: String, pairs: [TextPair], skippedPairs: Int = 0, options: FineTuneOptions) throws(FineTuneError) {
        guard pairs.count >= 2 else { throw .notEnoughPairs(usable: pairs.count, skipped: skippedPairs) }
        guard options.batchSize >= 2 else { throw .invalidSetting("batch of \(options.batchSize) pairs: a step needs at least 2") }
        guard options.batchSize <= pairs.count else { throw .batchLargerThanPairs(batch: options.batchSize, pairs: pairs.count) }
        if let steps = options.steps, steps < 1 { throw .invalidSetting("steps \(steps) must be positive") }
        if let epochs = options.epochs, epochs < 1 { throw .invalidSetting("epochs \(epochs) must be positive") }
        guard options.steps == nil || options.epochs == nil else { throw .invalidSetting("give steps or epochs, not both") }
        guard options.checkpointEvery >= 0 else { throw .invalidSetting("checkpoint interval \(options.checkpointEvery) must be ≥ 0") }
        guard options.keepCheckpoints >= 0 else { throw .invalidSetting("checkpoints to keep \(options.keepCheckpoints) must be ≥ 0") }
        if let (name, value) = options.augmentation.invalidProbabilities.first {
            throw .invalidSetting("\(name) probability \(value) must be in [0, 1]")
        }
        guard options.embedding.maxTokens >= 1 else { throw .invalidSetting("max tokens \(options.embedding.maxTokens) must be positive") }

        do {
            // The same token ids as inference (`Embedder.prepare`), without building the inference engine.
            let config = model.weights.config
            preparer = TextPreparer(tokenizer: try Tokenizer(spec: model.tokenizer), dimensions: config.hiddenSize,
                                    maxSequenceLength: LlamaModel.defaultMaxSequenceLength(config))
            try preparer.validate(options.embedding)
        } catch { throw .model("\(error)") }

        let batcher = PairBatcher(pairs: pairs, batchSize: options.batchSize, seed: options.training.seed)
        self.batcher = batcher
        let totalSteps = options.steps ?? (0..<(options.epochs ?? 1)).reduce(0) { $0 + batcher.batches(epoch: $1).count }
        var configuration = options.training
        configuration.totalSteps = totalSteps
        configuration.pooling = options.embedding.pooling
        var options = options
        options.training = configuration
        self.options = options
        self.pairs = pairs
        self.baseModel = baseModel
        hyperparameters = FineTuneHyperparameters(
            options: options, baseModel: baseModel, pairCount: pairs.count, pairsFingerprint: Self.fingerprint(pairs))

        do {
            trainer = try LlamaTrainer(weights: model.weights, configuration: configuration,
                                       maxSequenceLength: preparer.maxSequenceLength)
        } catch { throw .training(error) }

        let output = options.outputDirectory
        try Checkpoint.prepare(output)
        let newest = Checkpoint.newest(in: output)
        if options.resume {
            guard let newest else { throw .nothingToResume(directory: output) }
            let saved = try Checkpoint.read(newest, model: model.weights.config)
            let differences = saved.state.hyperparameters.differences(from: hyperparameters)
            guard differences.isEmpty else { throw .resumeMismatch(checkpoint: newest, differences: differences) }
            do {
                let optimizer = try AdamW(
                    firstMoment: saved.firstMoment, secondMoment: saved.secondMoment, steps: saved.optimizerSteps,
                    beta1: configuration.beta1, beta2: configuration.beta2, epsilon: configuration.epsilon,
                    weightDecay: configuration.weightDecay)
                try trainer.restore(adapter: saved.adapter, optimizer: optimizer, completedSteps: saved.state.completedSteps)
            } catch { throw .checkpoint(path: newest, reason: "\(error)") }
            position = saved.state.position
            resumedFrom = newest
            try TrainingLog.truncate(in: output, after: saved.state.completedSteps)
        } else {
            if let newest { throw .outputInUse(directory: output, checkpoint: (newest as NSString).lastPathComponent) }
            position = DataPosition(epoch: 0, batch: 0)
            resumedFrom = nil
            try TrainingLog.truncate(in: output, after: 0)
        }
    }

    /// Trains up to `stepLimit` completed steps (default: all), writing checkpoints, the log and, once
    /// every step is done, the final adapter in the output directory.
    public func run(until stepLimit: Int? = nil, progress: ((FineTuneProgress) -> Void)? = nil) throws(FineTuneError) {
        let limit = min(stepLimit ?? totalSteps, totalSteps)
        let start = ContinuousClock.now
        let firstStep = completedSteps
        var pairsTrained = 0
        var epochBatches = batcher.batches(epoch: position.epoch)
        let log = try TrainingLog(directory: options.outputDirectory)
        while completedSteps < limit {
            if position.batch >= epochBatches.count {
                position = DataPosition(epoch: position.epoch + 1, batch: 0)
                epochBatches = batcher.batches(epoch: position.epoch)
            }
            let batch = epochBatches[position.batch]
            let trainingPairs = try prepare(batch, epoch: position.epoch)
            let report: StepReport
            do { report = try trainer.step(trainingPairs) } catch { throw .training(error) }
            position.batch += 1
            pairsTrained += batch.count

            let elapsed = Self.seconds(ContinuousClock.now - start)
            let done = completedSteps - firstStep
            try log.append(TrainingLog.Entry(
                step: completedSteps, epoch: position.epoch, loss: report.loss, learningRate: report.learningRate,
                gradientNorm: report.gradientNorm, pairs: batch.count, seconds: elapsed))
            var checkpoint: String?
            if completedSteps == totalSteps || (options.checkpointEvery > 0 && completedSteps % options.checkpointEvery == 0) {
                checkpoint = try saveCheckpoint()
            }
            progress?(FineTuneProgress(
                step: completedSteps, totalSteps: totalSteps, epoch: position.epoch, loss: report.loss,
                learningRate: report.learningRate, gradientNorm: report.gradientNorm,
                pairsPerSecond: elapsed > 0 ? Double(pairsTrained) / elapsed : 0,
                secondsRemaining: elapsed * Double(totalSteps - completedSteps) / Double(max(1, done)),
                checkpoint: checkpoint))
        }
        if completedSteps == totalSteps {
            if Checkpoint.newest(in: options.outputDirectory).map({ Checkpoint.step(of: $0) }) != totalSteps { _ = try saveCheckpoint() }
            try Checkpoint.writeFinalAdapter(trainer.adapter, recipe: recipe, baseModel: baseModel, into: options.outputDirectory)
        }
    }

    /// Writes the checkpoint of the steps completed so far (as a periodic one would be) unless the
    /// newest checkpoint already holds them, and returns its path; nil before the first step. What a
    /// run that must stop early (a worker shutting down) saves, so a resumed run loses nothing.
    public func checkpoint() throws(FineTuneError) -> String? {
        guard completedSteps > 0 else { return nil }
        if let newest = Checkpoint.newest(in: options.outputDirectory), Checkpoint.step(of: newest) == completedSteps { return newest }
        return try saveCheckpoint()
    }

    /// What inference needs to embed texts as they were trained.
    public var recipe: EmbeddingRecipe { EmbeddingRecipe(options: options.embedding) }

    // MARK: Data

    /// Token ids of a batch: each side prompted and truncated by `Embedder.prepare`, the positive noised first.
    func prepare(_ batch: [Int], epoch: Int) throws(FineTuneError) -> [TrainingPair] {
        var result: [TrainingPair] = []
        result.reserveCapacity(batch.count)
        for index in batch {
            let pair = pairs[index]
            var positive = options.augmentation.apply(to: pair.positive, seed: augmentationSeed(epoch: epoch, pair: index))
            if positive.allSatisfy(\.isWhitespace) { positive = pair.positive }
            do {
                result.append(TrainingPair(text: try trainingText(pair.text), positive: try trainingText(positive)))
            } catch { throw .preparation(pair: index, reason: "\(error)") }
        }
        return result
    }

    private func trainingText(_ text: String) throws(EmbeddingError) -> TrainingText {
        let prepared = try preparer.prepare(text, options: options.embedding)
        // As `Embedder` pools: only the text's own tokens with excludePrompt, else every token.
        return TrainingText(tokens: prepared.tokens, pooledRows: options.embedding.excludePrompt ? prepared.textTokens : nil)
    }

    private func augmentationSeed(epoch: Int, pair: Int) -> UInt64 {
        var key = SeededRandom.mix(options.training.seed ^ 0xA06_0000_0000_0000)
        key = SeededRandom.mix(key ^ UInt64(truncatingIfNeeded: epoch))
        return SeededRandom.mix(key ^ UInt64(truncatingIfNeeded: pair))
    }

    /// FNV-1a over both sides of every pair: a resumed run must see the same data.
    static func fingerprint(_ pairs: [TextPair]) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix(_ text: String) {
            for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
            hash = (hash ^ 0xFF) &* 0x100_0000_01B3   // separator: ("ab", "c") ≠ ("a", "bc")
        }
        for pair in pairs {
            mix(pair.text)
            mix(pair.positive)
        }
        return String(hash, radix: 16)
    }

    // MARK: Checkpoints

    private func saveCheckpoint() throws(FineTuneError) -> String {
        let state = TrainerState(completedSteps: completedSteps, position: position, hyperparameters: hyperparameters)
        let path = try Checkpoint.write(state: state, adapter: trainer.adapter, optimizer: trainer.optimizer, recipe: recipe,
                                        baseModel: baseModel, into: options.outputDirectory)
        // Only now that the new one is complete may older ones go.
        if options.keepCheckpoints > 0 { try Checkpoint.prune(options.outputDirectory, keeping: options.keepCheckpoints) }
        return path
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// Where the next batch comes from: batch `batch` (0-based) of epoch `epoch`'s plan.
struct DataPosition: Codable, Equatable, Sendable {
    var epoch: Int
    var batch: Int
}

/// The settings a resumed run must share with the run that saved the checkpoint (the micro-batch size
/// may change: it moves memory, not the result).
public struct FineTuneHyperparameters: Codable, Equatable, Sendable {
    public var baseModel: String
    public var pairCount: Int
    public var pairsFingerprint: String
    public var batchSize: Int
    public var totalSteps: Int
    public var learningRate: Float
    public var warmupSteps: Int
    public var weightDecay: Float
    public var maxGradientNorm: Float
    public var rank: Int
    public var alpha: Float
    public var dropout: Float
    public var targets: [String]
    public var temperature: Float
    public var margin: Float
    public var seed: UInt64
    public var prompt: String
    public var pooling: String
    public var excludePrompt: Bool
    public var normalize: Bool
    public var maxTokens: Int
    public var augmentation: NoiseAugmentation

    init(options: FineTuneOptions, baseModel: String, pairCount: Int, pairsFingerprint: String) {
        let training = options.training
        self.baseModel = baseModel
        self.pairCount = pairCount
        self.pairsFingerprint = pairsFingerprint
        batchSize = options.batchSize
        totalSteps = training.totalSteps
        learningRate = training.learningRate
        warmupSteps = training.warmupSteps
        weightDecay = training.weightDecay
        maxGradientNorm = training.maxGradientNorm
        rank = training.lora.rank
        alpha = training.lora.alpha
        dropout = training.lora.dropout
        targets = training.lora.targets.map(\.rawValue)
        temperature = training.temperature
        margin = training.margin
        seed = training.seed
        prompt = options.embedding.prompt.template
        pooling = options.embedding.pooling.rawValue
        excludePrompt = options.embedding.excludePrompt
        normalize = options.embedding.normalize
        maxTokens = options.embedding.maxTokens
        augmentation = options.augmentation
    }

    /// "name: saved → requested" for every setting that differs.
    func differences(from requested: FineTuneHyperparameters) -> [String] {
        zip(Mirror(reflecting: self).children, Mirror(reflecting: requested).children).compactMap { saved, wanted in
            let (old, new) = (String(describing: saved.value), String(describing: wanted.value))
            return old == new ? nil : "\(saved.label ?? "?"): \(old) → \(new)"
        }
    }
}
