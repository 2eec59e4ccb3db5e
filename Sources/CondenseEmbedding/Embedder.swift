import CondenseModel
import CondenseTokenizer
import Foundation

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

/// One successfully embedded text.
public struct EmbeddedText: Sendable, Equatable {
    public var vector: [Float]
    /// Tokens run through the model, prompt included.
    public var tokenCount: Int
    public var promptTokenCount: Int
    public var truncated: Bool
}

/// Turns texts into vectors with a decoder model: prompt, tokenize, batch, run, pool.
public final class Embedder: Sendable {
    public let model: LlamaModel
    public let tokenizer: Tokenizer
    /// Name reported to clients (e.g. the model file name).
    public let modelName: String
    /// Most tokens per forward batch (a longer single text still runs, alone).
    public let tokenBudget: Int
    /// Tokens `encode(_, addSpecialTokens: true)` puts before and after any text (BOS/EOS per the model).
    private let leadingSpecialTokens: [Int32]
    private let trailingSpecialTokens: [Int32]

    /// Large enough for full-width GEMMs, small enough that a batch's activations stay in tens of MB.
    public static let defaultTokenBudget = 2048

    public init(model: LlamaModel, tokenizer: Tokenizer, modelName: String, tokenBudget: Int = Embedder.defaultTokenBudget) {
        self.model = model
        self.tokenizer = tokenizer
        self.modelName = modelName
        self.tokenBudget = max(1, tokenBudget)
        let frame = tokenizer.encode("", addSpecialTokens: true)
        let leading = (frame.first != nil && frame.first == tokenizer.bosTokenID) ? 1 : 0
        leadingSpecialTokens = Array(frame.prefix(leading))
        trailingSpecialTokens = Array(frame.dropFirst(leading))
    }

    /// Loads a GGUF file or Hugging Face directory (see `ModelLoader`).
    public static func load(modelPath: String, tokenBudget: Int = Embedder.defaultTokenBudget) throws(EmbeddingError) -> Embedder {
        do {
            let loaded = try ModelLoader.load(path: modelPath)
            let model = try LlamaModel(weights: loaded.weights)
            let tokenizer = try Tokenizer(spec: loaded.tokenizer)
            let name = URL(fileURLWithPath: modelPath).lastPathComponent
            return Embedder(model: model, tokenizer: tokenizer, modelName: name, tokenBudget: tokenBudget)
        } catch {
            throw .modelUnavailable(path: modelPath, reason: "\(error)")
        }
    }

    /// Length of the vectors before any `dimensions` cut.
    public var dimensions: Int { model.config.hiddenSize }

    /// Checks the per-request parts of `options` against this model.
    public func validate(_ options: EmbeddingOptions) throws(EmbeddingError) {
        if let requested = options.dimensions, !(1...dimensions).contains(requested) {
            throw .dimensionsOutOfRange(requested: requested, available: dimensions)
        }
        guard options.maxTokens >= 1 else { throw .invalidMaxTokens(options.maxTokens) }
        if options.pooling == .eos, tokenizer.eosTokenID == nil { throw .missingEOSToken }
    }

    /// Text from bytes, or the per-item error for invalid UTF-8 (for callers holding raw bytes).
    public static func decodeText(_ bytes: [UInt8]) -> Result<String, EmbeddingError> {
        // Decoding repairs invalid sequences with U+FFFD, so the bytes survive only when they were valid.
        let text = String(decoding: bytes, as: UTF8.self)
        return text.utf8.elementsEqual(bytes) ? .success(text) : .failure(.invalidUTF8)
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
        guard tokens.count <= model.maxSequenceLength else {
            throw .exceedsModelLimit(tokens: tokens.count, limit: model.maxSequenceLength)
        }
        let start = min(textStart, tokens.count)
        return PreparedText(tokens: tokens, textTokens: start..<max(start, min(textEnd, tokens.count)), truncated: truncated)
    }

    /// One result per text, input order. `progress` is called with the number of texts finished so far.
    public func embed(
        _ texts: [String], options: EmbeddingOptions, progress: (@Sendable (Int) -> Void)? = nil
    ) throws(EmbeddingError) -> [Result<[Float], EmbeddingError>] {
        try embedDetailed(texts, options: options, progress: progress).map { $0.map(\.vector) }
    }

    /// As `embed`, with token counts and truncation per item.
    public func embedDetailed(
        _ texts: [String], options: EmbeddingOptions, progress: (@Sendable (Int) -> Void)? = nil
    ) throws(EmbeddingError) -> [Result<EmbeddedText, EmbeddingError>] {
        try validate(options)
        // Every slot is overwritten: by its preparation error below, or by its batch's outcome.
        var results = [Result<EmbeddedText, EmbeddingError>](repeating: .failure(.emptyText), count: texts.count)
        var prepared: [PreparedText] = []
        var preparedIndexes: [Int] = []
        prepared.reserveCapacity(texts.count)
        for (index, text) in texts.enumerated() {
            do {
                prepared.append(try prepare(text, options: options))
                preparedIndexes.append(index)
            } catch {
                guard error.isItemError else { throw error }
                results[index] = .failure(error)
            }
        }
        var finished = texts.count - prepared.count
        let batches = BatchPlanner.plan(lengths: prepared.map(\.tokens.count), tokenBudget: tokenBudget)
        for batch in batches {
            let sequences = batch.map { prepared[$0].tokens }
            do {
                let output = try model.forward(sequences)
                for (position, item) in batch.enumerated() {
                    let text = prepared[item]
                    let pooledRows = options.excludePrompt ? text.textTokens : 0..<text.tokens.count
                    let pooled = PoolingMath.pool(
                        output.states(of: position), width: output.hidden.cols, pooling: options.pooling, pooledRows: pooledRows)
                    results[preparedIndexes[item]] = .success(EmbeddedText(
                        vector: PoolingMath.finish(pooled, dimensions: options.dimensions, normalize: options.normalize),
                        tokenCount: text.tokens.count, promptTokenCount: text.promptTokenCount, truncated: text.truncated))
                }
            } catch {
                for item in batch { results[preparedIndexes[item]] = .failure(.forwardFailed(error.description)) }
            }
            finished += batch.count
            progress?(finished)
        }
        if batches.isEmpty { progress?(finished) }
        return results
    }
}
