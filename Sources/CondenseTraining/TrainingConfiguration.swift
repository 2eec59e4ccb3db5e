import CondenseEmbedding

/// One text of a training pair, as token ids (prompt applied and truncated by the caller).
public struct TrainingText: Sendable, Equatable {
    public var tokens: [Int32]
    /// Rows that `mean` / `weighted-mean` pooling average (the text's own tokens with `excludePrompt`);
    /// `last` and `eos` read the last row.
    public var pooledRows: Range<Int>

    /// - Parameter pooledRows: default: all tokens.
    public init(tokens: [Int32], pooledRows: Range<Int>? = nil) {
        self.tokens = tokens
        self.pooledRows = pooledRows ?? 0..<tokens.count
    }
}

/// A text and its positive; the other pairs' positives are its negatives.
public struct TrainingPair: Sendable, Equatable {
    public var text: TrainingText
    public var positive: TrainingText

    public init(text: TrainingText, positive: TrainingText) {
        self.text = text
        self.positive = positive
    }
}

/// Hyperparameters of contrastive LoRA fine-tuning. Defaults follow the reference code (r 64, alpha 16,
/// dropout 0.05, lr 5e-5, 100 warmup steps, temperature 0.2, margin 0) and HF Trainer's optimizer defaults
/// (AdamW β = (0.9, 0.999), ε = 1e-8, weight decay 0, gradient clipping at norm 1).
public struct TrainingConfiguration: Sendable, Equatable {
    public var lora: LoRAConfiguration
    public var learningRate: Float
    public var warmupSteps: Int
    /// Optimizer steps of the whole run: the learning rate decays linearly to 0 at this step.
    public var totalSteps: Int
    public var weightDecay: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Global gradient-norm clip; 0 disables clipping.
    public var maxGradientNorm: Float
    public var temperature: Float
    /// Subtracted from each positive's cosine before the temperature (0 = plain InfoNCE).
    public var margin: Float
    /// As inference; for `eos` the caller appends the EOS id to every text (as `Embedder.prepare` does).
    public var pooling: Pooling
    /// Most tokens of one micro-batch (consecutive texts packed up to this budget; a longer text runs
    /// alone). Activation memory grows with it: about 0.8 MB per token on SmolLM2-135M with r = 64.
    /// A batch within the budget runs one forward/backward; a larger one uses gradient caching, with
    /// negatives from the whole batch either way.
    public var microBatchTokens: Int
    /// Seeds the adapter's initialisation and the dropout masks.
    public var seed: UInt64

    public init(
        lora: LoRAConfiguration = .init(), learningRate: Float = 5e-5, warmupSteps: Int = 100, totalSteps: Int = 1000,
        weightDecay: Float = 0, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, maxGradientNorm: Float = 1,
        temperature: Float = 0.2, margin: Float = 0, pooling: Pooling = .mean, microBatchTokens: Int = 1024, seed: UInt64 = 42
    ) {
        self.lora = lora
        self.learningRate = learningRate
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.weightDecay = weightDecay
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.maxGradientNorm = maxGradientNorm
        self.temperature = temperature
        self.margin = margin
        self.pooling = pooling
        self.microBatchTokens = microBatchTokens
        self.seed = seed
    }

    /// The learning rate schedule these settings describe.
    public var schedule: LearningRateSchedule {
        LearningRateSchedule(baseRate: learningRate, warmupSteps: warmupSteps, totalSteps: totalSteps)
    }

    func validate() throws(TrainingError) {
        try lora.validate()
        guard learningRate.isFinite, learningRate >= 0 else { throw .invalidConfiguration("learning rate \(learningRate) must be ≥ 0") }
        guard warmupSteps >= 0 else { throw .invalidConfiguration("warmup steps \(warmupSteps) must be ≥ 0") }
        guard totalSteps > 0 else { throw .invalidConfiguration("total steps \(totalSteps) must be positive") }
        guard weightDecay.isFinite, weightDecay >= 0 else { throw .invalidConfiguration("weight decay \(weightDecay) must be ≥ 0") }
        guard beta1 >= 0, beta1 < 1, beta2 >= 0, beta2 < 1 else {
            throw .invalidConfiguration("AdamW betas (\(beta1), \(beta2)) must be in [0, 1)")
        }
        guard epsilon > 0 else { throw .invalidConfiguration("AdamW epsilon \(epsilon) must be positive") }
        guard maxGradientNorm.isFinite, maxGradientNorm >= 0 else {
            throw .invalidConfiguration("max gradient norm \(maxGradientNorm) must be ≥ 0")
        }
        guard temperature.isFinite, temperature > 0 else { throw .invalidConfiguration("temperature \(temperature) must be positive") }
        guard margin.isFinite else { throw .invalidConfiguration("margin \(margin) must be finite") }
        guard microBatchTokens > 0 else { throw .invalidConfiguration("micro-batch of \(microBatchTokens) tokens must be positive") }
    }
}

/// What one optimizer step did.
public struct StepReport: Sendable, Equatable {
    /// Optimizer step index (0-based) this report belongs to.
    public var step: Int
    public var loss: Double
    /// Global gradient norm before clipping.
    public var gradientNorm: Float
    public var learningRate: Float
}
