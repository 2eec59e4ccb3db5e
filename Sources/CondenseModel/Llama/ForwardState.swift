import CondenseTensor

/// Where each sequence of a packed batch lives.
struct Batch: Sendable {
    /// Sequence `i` is rows `offsets[i] ..< offsets[i + 1]`.
    let offsets: [Int]
    var sequenceCount: Int { offsets.count - 1 }
    var tokenCount: Int { offsets[offsets.count - 1] }
    var maxLength: Int { (0..<sequenceCount).map(length(of:)).max() ?? 0 }
    func length(of sequence: Int) -> Int { offsets[sequence + 1] - offsets[sequence] }
}

/// Column layout of the per-token activation rows.
struct ActivationLayout: Sendable {
    /// [q heads | k heads | v heads] per row, as produced by the stacked q|k|v projection.
    let qkvWidth: Int
    let queryOffset: Int
    let keyOffset: Int
    let valueOffset: Int
    /// Concatenated attention heads per row (input of the output projection).
    let attentionWidth: Int
    /// [gate | up] per row, as produced by the stacked gate|up projection.
    let gateUpWidth: Int

    init(config: ModelConfig) {
        let queryWidth = config.headCount * config.headDim, kvWidth = config.kvHeadCount * config.headDim
        queryOffset = 0
        keyOffset = queryWidth
        valueOffset = queryWidth + kvWidth
        qkvWidth = queryWidth + 2 * kvWidth
        attentionWidth = queryWidth
        gateUpWidth = 2 * config.intermediateSize
    }
}

/// Scratch memory of one forward call, allocated once and reused by every layer.
final class ForwardState {
    let batch: Batch
    let layout: ActivationLayout
    let workers: Int
    let scratchPerWorker: Int
    /// KV-cached decoding (a batch of one sequence): its tokens continue the `cache.count` tokens the cache
    /// holds, and attention reads keys and values from the cache. nil for a plain forward pass.
    let cache: KVCache?
    /// Position of the batch's first token in its sequence: `cache.count`, or 0.
    let pastLength: Int

    let residual: UnsafeMutablePointer<Float>        // [tokens x hidden], the residual stream
    let normed: UnsafeMutablePointer<Float>          // [tokens x hidden]
    let qkv: UnsafeMutablePointer<Float>             // [tokens x qkvWidth]
    let attentionOutput: UnsafeMutablePointer<Float> // [tokens x attentionWidth]
    let gateUp: UnsafeMutablePointer<Float>          // [tokens x gateUpWidth]
    let scratch: UnsafeMutablePointer<Float>         // [workers x scratchPerWorker]
    /// Last-layer attention probabilities, [heads·L x L] per sequence at `mapOffsets`; nil unless asked.
    let attentionMaps: UnsafeMutablePointer<Float>?
    let mapOffsets: [Int]
    private let heads: Int

    init(config: ModelConfig, batch: Batch, workers: Int, keepAttention: Bool, cache: KVCache? = nil) {
        self.batch = batch
        layout = ActivationLayout(config: config)
        self.workers = workers
        self.cache = cache
        pastLength = cache?.count ?? 0
        heads = config.headCount
        let tokens = batch.tokenCount
        scratchPerWorker = CausalAttention.scratchCount(length: pastLength + batch.maxLength, headDim: config.headDim)
        residual = .allocate(capacity: max(1, tokens * config.hiddenSize))
        normed = .allocate(capacity: max(1, tokens * config.hiddenSize))
        qkv = .allocate(capacity: max(1, tokens * layout.qkvWidth))
        attentionOutput = .allocate(capacity: max(1, tokens * layout.attentionWidth))
        gateUp = .allocate(capacity: max(1, tokens * layout.gateUpWidth))
        scratch = .allocate(capacity: max(1, workers * scratchPerWorker))
        var offsets = [0]
        for sequence in 0..<batch.sequenceCount {
            let length = batch.length(of: sequence)
            offsets.append(offsets[sequence] + config.headCount * length * length)
        }
        mapOffsets = offsets
        attentionMaps = keepAttention ? .allocate(capacity: max(1, offsets[offsets.count - 1])) : nil
    }

    /// The last layer's attention maps as one [heads·L x L] matrix per sequence.
    func attentionMatrices() -> [Matrix] {
        guard let maps = attentionMaps else { return [] }
        return (0..<batch.sequenceCount).map { sequence in
            let length = batch.length(of: sequence)
            let start = maps + mapOffsets[sequence]
            return Matrix(rows: heads * length, cols: length,
                          data: Array(UnsafeBufferPointer(start: start, count: heads * length * length)))
        }
    }

    func deallocate() {
        for buffer in [residual, normed, qkv, attentionOutput, gateUp, scratch] { buffer.deallocate() }
        attentionMaps?.deallocate()
    }
}

/// Hands non-Sendable scratch pointers to attention workers. Sound because each worker writes only the
/// rows and heads of its own tasks and its own scratch slice, and `concurrentPerform` joins before return.
struct UnsafeSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
