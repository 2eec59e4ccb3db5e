/// How the final hidden states of a text's tokens become one vector.
public enum Pooling: String, Sendable, CaseIterable {
    /// Average over the pooled tokens (all of the prompted input, or only the text's own tokens
    /// with `excludePrompt`).
    case mean
    /// State of the last token of the prompted input.
    case last
    /// The model's EOS id is appended after the prompted input; its state is the vector.
    case eos
    /// SGPT position-weighted mean: token at 1-based position i weighs i / Σ j.
    case weightedMean = "weighted-mean"
}

public enum TruncationPolicy: String, Sendable, CaseIterable {
    /// Keep the first `maxTokens` tokens of the raw text, then wrap it in the prompt.
    case truncate
    /// Fail the item with `EmbeddingError.textTooLong`.
    case reject
}

/// Numeric encoding of returned vectors (see `EncodedEmbedding`).
public enum OutputPrecision: String, Sendable, CaseIterable {
    case float32, float16, int8, binary
}

public struct EmbeddingOptions: Sendable, Equatable {
    public var prompt: PromptTemplate
    public var pooling: Pooling
    /// L2-normalize the (dimension-cut) vector.
    public var normalize: Bool
    /// Pool only the text's own tokens (for `mean` and `weighted-mean`; `last` and `eos` read one
    /// fixed position and ignore it). sentence-transformers (`include_prompt=False`) tokenizes the
    /// whole prompted string and masks the first len(tokenize(prompt)) tokens, which suits prefix
    /// prompts only; here prompt prefix, text and suffix are tokenized apart and concatenated, so
    /// the text's tokens are known exactly and suffix tokens are excluded too. Only this option
    /// tokenizes that way; otherwise the prompted string is tokenized whole, as the reference code does.
    public var excludePrompt: Bool
    /// Keep only the first `dimensions` values (Matryoshka-style); nil = all.
    public var dimensions: Int?
    /// Token limit of the raw text, before the prompt is added (as the reference code does).
    public var maxTokens: Int
    public var truncation: TruncationPolicy

    public static let defaultMaxTokens = 512

    public init(
        prompt: PromptTemplate = .none, pooling: Pooling = .mean, normalize: Bool = false, excludePrompt: Bool = false,
        dimensions: Int? = nil, maxTokens: Int = EmbeddingOptions.defaultMaxTokens, truncation: TruncationPolicy = .truncate
    ) {
        self.prompt = prompt
        self.pooling = pooling
        self.normalize = normalize
        self.excludePrompt = excludePrompt
        self.dimensions = dimensions
        self.maxTokens = maxTokens
        self.truncation = truncation
    }
}
