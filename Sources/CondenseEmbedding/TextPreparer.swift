import CondenseTokenizer

/// The token ids the model sees for one text.
public struct PreparedText: Sendable, Equatable {
    /// Prompted text after truncation, with the model's special tokens (and the EOS id for `eos` pooling).
    public var tokens: [Int32]
    /// Positions of the text's own tokens in `tokens`. Exact with `excludePrompt` (prompt and text
    /// are tokenized apart); otherwise the prompt's tokens are counted on their own, so a token
    /// that straddles the prompt/text boundary may be attributed to either side.
    public var textTokens: Range<Int>
    /// Whether the raw text was cut to `maxTokens`.
    public var truncated: Bool

    public var promptTokenCount: Int { tokens.count - textTokens.count }

    public init(tokens: [Int32], textTokens: Range<Int>, truncated: Bool) {
        self.tokens = tokens
        self.textTokens = textTokens
        self.truncated = truncated
    }
}

/// Prompt, truncation and tokenization of texts for one model: the token ids an `Embedder` runs, without
/// the model's weights (the trainer prepares its pairs the same way).
public struct TextPreparer: Sendable {
    public let tokenizer: Tokenizer
    /// Width of the model's hidden states (the longest `dimensions` cut).
    public let dimensions: Int
    /// Longest token sequence the model accepts.
    public let maxSequenceLength: Int
    /// Tokens `encode(_, addSpecialTokens: true)` puts before and after any text (BOS/EOS per the model).
    private let leadingSpecialTokens: [Int32]
    private let trailingSpecialTokens: [Int32]

    public init(tokenizer: Tokenizer, dimensions: Int, maxSequenceLength: Int) {
        self.tokenizer = tokenizer
        self.dimensions = dimensions
        self.maxSequenceLength = maxSequenceLength
        let frame = tokenizer.encode("", addSpecialTokens: true)
        let leading = (frame.first != nil && frame.first == tokenizer.bosTokenID) ? 1 : 0
        leadingSpecialTokens = Array(frame.prefix(leading))
        trailingSpecialTokens = Array(frame.dropFirst(leading))
    }

    /// Checks the per-request parts of `options` against the model.
    public func validate(_ options: EmbeddingOptions) throws(EmbeddingError) {
        if let requested = options.dimensions, !(1...dimensions).contains(requested) {
            throw .dimensionsOutOfRange(requested: requested, available: dimensions)
        }
        guard options.maxTokens >= 1 else { throw .invalidMaxTokens(options.maxTokens) }
        if options.pooling == .eos, tokenizer.eosTokenID == nil { throw .missingEOSToken }
    }

    /// The token ids the model sees for `text` (prompt applied, truncation) and the range of the
    /// text's own tokens. Throws per-item errors (empty, too long) and per-request ones (options).
    public func prepare(_ text: String, options: EmbeddingOptions) throws(EmbeddingError) -> PreparedText {
        try validate(options)
        guard !text.allSatisfy(\.isWhitespace) else { throw .emptyText }
        // As the reference code: limit the raw text, then wrap the (decoded) remainder in the prompt.
        var text = text
        var truncated = false
        let rawTokens = tokenizer.encode(text, addSpecialTokens: false)
        if rawTokens.count > options.maxTokens {
            guard options.truncation == .truncate else {
                throw .textTooLong(tokens: rawTokens.count, limit: options.maxTokens)
            }
            text = tokenizer.decode(Array(rawTokens.prefix(options.maxTokens)))
            truncated = true
        }

        let prompt = options.prompt
        // Whitespace that ends the prefix goes with the text, so "Query: {text}" still yields "ĠHello"
        // rather than "Ġ" + "Hello" when the parts are tokenized apart.
        let prefixEnd = prompt.prefix.lastIndex(where: { !$0.isWhitespace }).map { prompt.prefix.index(after: $0) }
            ?? prompt.prefix.startIndex
        let prefixCore = String(prompt.prefix[..<prefixEnd])
        let separator = String(prompt.prefix[prefixEnd...])
        let prefixTokens = tokenizer.encode(prefixCore, addSpecialTokens: false)
        let suffixTokens = tokenizer.encode(prompt.suffix, addSpecialTokens: false)

        var tokens: [Int32]
        let textStart = leadingSpecialTokens.count + prefixTokens.count
        let textEnd: Int
        if options.excludePrompt, options.pooling == .mean || options.pooling == .weightedMean {
            let textTokens = tokenizer.encode(separator + text, addSpecialTokens: false)
            tokens = leadingSpecialTokens + prefixTokens + textTokens + suffixTokens + trailingSpecialTokens
            textEnd = textStart + textTokens.count
        } else {
            tokens = tokenizer.encode(prompt.apply(to: text), addSpecialTokens: true)
            textEnd = max(textStart, tokens.count - suffixTokens.count - trailingSpecialTokens.count)
        }
        if options.pooling == .eos, let eos = tokenizer.eosTokenID { tokens.append(eos) }
        guard tokens.count <= maxSequenceLength else {
            throw .exceedsModelLimit(tokens: tokens.count, limit: maxSequenceLength)
        }
        let start = min(textStart, tokens.count)
        return PreparedText(tokens: tokens, textTokens: start..<max(start, min(textEnd, tokens.count)), truncated: truncated)
    }
}
