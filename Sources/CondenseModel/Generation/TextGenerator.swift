import CondenseTensor

extension LlamaModel {
    /// An empty cache for one sequence of up to `capacity` tokens (at most `maxSequenceLength`).
    public func makeKVCache(capacity: Int) -> KVCache {
        KVCache(config: config, capacity: max(1, min(capacity, maxSequenceLength)))
    }

    /// Final-norm hidden states [tokens.count x hidden] of `tokens` continuing the sequence `cache` holds;
    /// their keys and values are appended to the cache. The same block code as `forward`, over the new
    /// tokens only: equals the last rows of `forward([cached tokens + tokens])` up to GEMM rounding.
    /// - Precondition: `cache` was made by this model (or one of the same shape).
    public func forward(appending tokens: [Int32], to cache: KVCache) throws(ForwardError) -> Matrix {
        precondition(cache.layerCount == config.layerCount && cache.rowWidth == config.kvHeadCount * config.headDim,
                     "KV cache of another model shape")
        guard cache.count + tokens.count <= cache.capacity else {
            throw .sequenceTooLong(sequence: 0, length: cache.count + tokens.count, limit: cache.capacity)
        }
        try checkVocabulary(tokens, index: 0)
        let batch = Batch(offsets: [0, tokens.count])
        let workers = attentionShare(batch, pastLength: cache.count) < Self.parallelAttentionShare ? 1 : attentionWorkers
        let state = ForwardState(config: config, batch: batch, workers: workers, keepAttention: false, cache: cache)
        defer { state.deallocate() }
        runStack([tokens], state)
        cache.commit(rows: tokens.count)
        return finalHiddenStates(state)
    }
}

/// Why `TextGenerator.generate` stopped.
public enum FinishReason: String, Sendable, Equatable {
    /// A stop token was sampled (not part of the output).
    case stopToken
    /// `maxNewTokens` were generated.
    case tokenLimit
    /// The caller's `shouldStop` returned true.
    case stopCondition
    /// The KV cache is full.
    case cacheFull
}

public struct Generation: Sendable, Equatable {
    /// The sampled tokens, without the stop token.
    public var tokens: [Int32]
    public var finishReason: FinishReason
}

/// Autoregressive generation with a KV cache: the decoder stack plus the LM head (the untied output
/// projection, else the token embedding). Immutable, so one instance serves concurrent generations,
/// each with its own cache.
public final class TextGenerator: Sendable {
    public let model: LlamaModel
    /// [vocab x hidden].
    private let head: Linear

    public init(weights: ModelWeights, maxSequenceLength: Int? = nil) throws(LlamaModelError) {
        model = try LlamaModel(weights: weights, maxSequenceLength: maxSequenceLength)
        let config = weights.config
        let projection = weights.outputProjection ?? weights.tokenEmbedding
        guard projection.rows == config.vocabSize, projection.cols == config.hiddenSize,
              projection.data.count == config.vocabSize * config.hiddenSize
        else {
            throw .shapeMismatch(tensor: "output", expected: "\(config.vocabSize)x\(config.hiddenSize)",
                                 actual: "\(projection.rows)x\(projection.cols)")
        }
        head = Linear(projection)
    }

    /// Logits [vocab] of the token after `tokens`, which continue what `cache` holds (and are appended to it).
    public func nextTokenLogits(appending tokens: [Int32], to cache: KVCache) throws(GenerationError) -> [Float] {
        guard !tokens.isEmpty else { throw .emptyPrompt }
        let hidden: Matrix
        do { hidden = try model.forward(appending: tokens, to: cache) } catch { throw .forward(error) }
        return logits(ofLastRow: hidden)
    }

    /// The LM head applied to the last row of `hidden` only (the only position generation samples from).
    func logits(ofLastRow hidden: Matrix) -> [Float] {
        let width = hidden.cols, lastRow = (hidden.rows - 1) * width
        return [Float](unsafeUninitializedCapacity: head.outFeatures) { logits, count in
            hidden.data.withUnsafeBufferPointer { states in
                guard let states = states.baseAddress, let out = logits.baseAddress else { return }
                head.apply(states + lastRow, rows: 1, into: out)
            }
            count = head.outFeatures
        }
    }

    /// Samples up to `maxNewTokens` tokens after `prompt`, one forward step per token over `cache` (reset
    /// first; its capacity also bounds prompt + output). Stops before a token of `stopTokens`, or after a
    /// token for which `shouldStop(tokens so far)` holds.
    public func generate(
        prompt: [Int32], maxNewTokens: Int, stopTokens: Set<Int32>, sampler: inout Sampler, cache: KVCache,
        shouldStop: ([Int32]) -> Bool = { _ in false }
    ) throws(GenerationError) -> Generation {
        cache.reset()
        var tokens: [Int32] = []
        guard maxNewTokens > 0 else { return Generation(tokens: tokens, finishReason: .tokenLimit) }
        var logits = try nextTokenLogits(appending: prompt, to: cache)
        while true {
            let token = sampler.sample(logits)
            if stopTokens.contains(token) { return Generation(tokens: tokens, finishReason: .stopToken) }
            tokens.append(token)
            if shouldStop(tokens) { return Generation(tokens: tokens, finishReason: .stopCondition) }
            if tokens.count == maxNewTokens { return Generation(tokens: tokens, finishReason: .tokenLimit) }
            if cache.count == cache.capacity { return Generation(tokens: tokens, finishReason: .cacheFull) }
            logits = try nextTokenLogits(appending: [token], to: cache)
        }
    }
}
