import CondenseModel
import CondenseTokenizer
import Foundation

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
    /// Prompt, truncation and tokenization: the token ids `model` runs.
    public let preparer: TextPreparer
    public var tokenizer: Tokenizer { preparer.tokenizer }
    /// Name reported to clients (e.g. the model file name).
    public let modelName: String
    /// Most tokens per forward batch (a longer single text still runs, alone).
    public let tokenBudget: Int

    /// Large enough for full-width GEMMs, small enough that a batch's activations stay in tens of MB.
    public static let defaultTokenBudget = 2048

    public init(model: LlamaModel, tokenizer: Tokenizer, modelName: String, tokenBudget: Int = Embedder.defaultTokenBudget) {
        self.model = model
        preparer = TextPreparer(tokenizer: tokenizer, dimensions: model.config.hiddenSize,
                                maxSequenceLength: model.maxSequenceLength)
        self.modelName = modelName
        self.tokenBudget = max(1, tokenBudget)
    }

    /// Loads a GGUF file or Hugging Face directory (see `ModelLoader`).
    public static func load(modelPath: String, tokenBudget: Int = Embedder.defaultTokenBudget) throws(EmbeddingError) -> Embedder {
        do {
            var loaded = try ModelLoader.load(path: modelPath)
            let model = try LlamaModel(packing: &loaded.weights)
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
        try preparer.validate(options)
    }

    /// Text from bytes, or the per-item error for invalid UTF-8 (for callers holding raw bytes).
    public static func decodeText(_ bytes: [UInt8]) -> Result<String, EmbeddingError> {
        // Decoding repairs invalid sequences with U+FFFD, so the bytes survive only when they were valid.
        let text = String(decoding: bytes, as: UTF8.self)
        return text.utf8.elementsEqual(bytes) ? .success(text) : .failure(.invalidUTF8)
    }

    /// The token ids the model sees for `text` (see `TextPreparer.prepare`).
    public func prepare(_ text: String, options: EmbeddingOptions) throws(EmbeddingError) -> PreparedText {
        try preparer.prepare(text, options: options)
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
