import CondenseTensor
import Dispatch
import Foundation

/// The decoder stack of Llama-family models (Llama 2/3.x, SmolLM, Qwen2, Qwen3) in F32, producing final
/// hidden states for batches of token sequences. Immutable after `init`, so one instance serves
/// concurrent `forward` calls; each call owns its scratch memory.
public final class LlamaModel: Sendable {
    public let config: ModelConfig
    /// Longest sequence `forward` accepts (rows of the precomputed RoPE table).
    public let maxSequenceLength: Int

    let tokenEmbedding: Matrix
    let blocks: [LlamaBlock]
    let finalNorm: [Float]
    let rotary: RotaryTable
    let attention: CausalAttention
    /// Most threads that share the attention work between the products (the kernels' workers are idle then).
    let attentionWorkers: Int

    /// Attention runs on one thread unless it is at least this share of a layer's multiply-adds.
    /// Measured on the 2-core target with the embedding workload (~32-token texts, attention ≈ 3% of
    /// the time; measured when the products ran on OpenBLAS): a second thread gained nothing and lost a
    /// little to contention with the workers that still spin after a product. Attention grows with
    /// sequence length, so long texts are split.
    static let parallelAttentionShare = 0.1

    /// Positions the RoPE table covers unless the caller asks for fewer: long enough for any embedding
    /// input this CPU engine is meant for, small enough (a few MB) for models trained on 128k contexts.
    public static let defaultPositionLimit = 8192

    /// `maxSequenceLength` of a model built without one: `min(maxPositionEmbeddings, defaultPositionLimit)`.
    public static func defaultMaxSequenceLength(_ config: ModelConfig) -> Int {
        max(1, min(config.maxPositionEmbeddings, defaultPositionLimit))
    }

    /// Validates every tensor's shape, then packs the projections (`PackedWeight`, q|k|v and gate|up
    /// stacked); the embedding table and norms are shared, not copied. `weights` stays as it was.
    /// - Parameter maxSequenceLength: longest accepted sequence; default `min(maxPositionEmbeddings, 8192)`.
    public convenience init(weights: ModelWeights, maxSequenceLength: Int? = nil) throws(LlamaModelError) {
        var shared = weights
        try self.init(packing: &shared, maxSequenceLength: maxSequenceLength)
    }

    /// Like `init(weights:)`, but takes the layers out of `weights` (left with none) and frees each layer's
    /// row-major matrices once it is packed, when nothing else holds them: loading then never holds two
    /// copies of the projections (for SmolLM2-135M the peak stays near 600 MB instead of ~1 GB).
    public init(packing weights: inout ModelWeights, maxSequenceLength: Int? = nil) throws(LlamaModelError) {
        let config = weights.config
        try Self.validate(weights)
        self.config = config
        self.maxSequenceLength = max(1, maxSequenceLength ?? Self.defaultMaxSequenceLength(config))
        tokenEmbedding = weights.tokenEmbedding
        finalNorm = weights.finalNorm
        var layers: [LayerWeights] = []
        swap(&layers, &weights.layers)
        var packed: [LlamaBlock] = []
        packed.reserveCapacity(layers.count)
        while let layer = layers.popLast() { packed.append(LlamaBlock(layer)) }
        blocks = packed.reversed()
        rotary = RotaryTable(
            inverseFrequencies: RotaryFrequencies.inverse(
                headDim: config.headDim, theta: config.ropeTheta, scaling: config.ropeScaling),
            positions: self.maxSequenceLength)
        attention = CausalAttention(headDim: config.headDim, scale: 1 / Float(config.headDim).squareRoot())
        attentionWorkers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8))
    }

    /// Final-norm hidden states for a batch of token sequences of different lengths. All tokens are
    /// packed into one [totalTokens x hidden] matrix for the linear layers (no padding); attention runs
    /// per sequence (causal, grouped-query). A sequence's states do not depend on the rest of the batch,
    /// bit for bit (see `PackedWeight`).
    public func forward(_ sequences: [[Int32]], options: ForwardOptions = .init()) throws(ForwardError) -> ForwardOutput {
        var offsets = [0]
        offsets.reserveCapacity(sequences.count + 1)
        for (index, sequence) in sequences.enumerated() {
            guard sequence.count <= maxSequenceLength else {
                throw .sequenceTooLong(sequence: index, length: sequence.count, limit: maxSequenceLength)
            }
            try checkVocabulary(sequence, index: index)
            offsets.append(offsets[offsets.count - 1] + sequence.count)
        }
        let batch = Batch(offsets: offsets)
        let workers = attentionShare(batch) < Self.parallelAttentionShare ? 1 : attentionWorkers
        let state = ForwardState(config: config, batch: batch, workers: workers,
                                 keepAttention: options.returnLastLayerAttention)
        defer { state.deallocate() }

        runStack(sequences, state)
        let hidden = finalHiddenStates(state)
        return ForwardOutput(
            hidden: hidden, offsets: offsets,
            lastLayerAttention: options.returnLastLayerAttention ? state.attentionMatrices() : nil)
    }

    /// Throws for the first token of `sequence` (batch entry `index`) outside the vocabulary.
    func checkVocabulary(_ sequence: [Int32], index: Int) throws(ForwardError) {
        if let position = sequence.firstIndex(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
            throw .tokenOutOfRange(sequence: index, position: position, token: sequence[position], vocabSize: config.vocabSize)
        }
    }

    /// Embeds `sequences` into the residual stream of `state` and runs every decoder block over it (the
    /// last one records attention maps when `state` has room for them).
    func runStack(_ sequences: [[Int32]], _ state: ForwardState) {
        embed(sequences, into: state.residual)
        for (index, block) in blocks.enumerated() {
            decoderBlock(block, layer: index, state, recordAttention: index == blocks.count - 1)
        }
    }

    /// Attention's share of one layer's multiply-adds for `batch` (QKᵀ and PV over the causal half),
    /// whose tokens follow `pastLength` cached ones.
    func attentionShare(_ batch: Batch, pastLength: Int = 0) -> Double {
        let layout = ActivationLayout(config: config), hidden = config.hiddenSize
        let linearPerToken = hidden * layout.qkvWidth + layout.attentionWidth * hidden + 3 * hidden * config.intermediateSize
        let squaredLengths = (0..<batch.sequenceCount).reduce(0) {
            $0 + batch.length(of: $1) * (pastLength + batch.length(of: $1))
        }
        let attention = Double(squaredLengths) * Double(config.headCount * config.headDim)
        let total = attention + Double(batch.tokenCount * linearPerToken)
        return total > 0 ? attention / total : 0
    }

    // MARK: The decoder block

    /// x ← x + Attention(RMSNorm(x));  x ← x + W_down·(silu(W_gate·RMSNorm(x)) ⊙ W_up·RMSNorm(x)).
    private func decoderBlock(_ block: LlamaBlock, layer: Int, _ state: ForwardState, recordAttention: Bool) {
        let tokens = state.batch.tokenCount
        let x = state.residual, normed = state.normed

        rmsNormRows(x, weight: block.attentionNorm, into: normed, rows: tokens)
        block.qkv.apply(normed, rows: tokens, into: state.qkv)
        if let queryNorm = block.queryNorm, let keyNorm = block.keyNorm {
            normalizeHeads(state, queryNorm: queryNorm, keyNorm: keyNorm)
        }
        applyRotary(state)
        if let cache = state.cache {
            let layout = state.layout
            cache.store(layer: layer, rows: tokens, keys: state.qkv + layout.keyOffset,
                        values: state.qkv + layout.valueOffset, sourceRowStride: layout.qkvWidth)
        }
        attend(state, layer: layer, recordAttention: recordAttention)
        block.attentionOutput.apply(state.attentionOutput, rows: tokens, into: x, accumulate: true)

        rmsNormRows(x, weight: block.ffnNorm, into: normed, rows: tokens)
        block.gateUp.apply(normed, rows: tokens, into: state.gateUp)
        swiGLU(state)
        block.down.apply(state.gateUp, rows: tokens, inputStride: state.layout.gateUpWidth, into: x, accumulate: true)
    }

    // MARK: Steps

    private func embed(_ sequences: [[Int32]], into x: UnsafeMutablePointer<Float>) {
        let hidden = config.hiddenSize
        tokenEmbedding.data.withUnsafeBufferPointer { table in
            guard let table = table.baseAddress else { return }
            var row = 0
            for sequence in sequences {
                for token in sequence {
                    (x + row * hidden).update(from: table + Int(token) * hidden, count: hidden)
                    row += 1
                }
            }
        }
    }

    private func rmsNormRows(
        _ input: UnsafeMutablePointer<Float>, weight: [Float], into output: UnsafeMutablePointer<Float>, rows: Int
    ) {
        let hidden = config.hiddenSize, epsilon = config.rmsNormEps
        weight.withUnsafeBufferPointer { w in
            guard let w = w.baseAddress else { return }
            for row in 0..<rows {
                VectorMath.rmsNorm(input + row * hidden, weight: w, epsilon: epsilon, count: hidden, into: output + row * hidden)
            }
        }
    }

    /// Qwen3: RMSNorm over each query and key head vector (before RoPE).
    private func normalizeHeads(_ state: ForwardState, queryNorm: [Float], keyNorm: [Float]) {
        let layout = state.layout, headDim = config.headDim, epsilon = config.rmsNormEps
        queryNorm.withUnsafeBufferPointer { qn in
            keyNorm.withUnsafeBufferPointer { kn in
                guard let qn = qn.baseAddress, let kn = kn.baseAddress else { return }
                for row in 0..<state.batch.tokenCount {
                    let base = state.qkv + row * layout.qkvWidth
                    for head in 0..<config.headCount {
                        let q = base + layout.queryOffset + head * headDim
                        VectorMath.rmsNorm(q, weight: qn, epsilon: epsilon, count: headDim, into: q)
                    }
                    for head in 0..<config.kvHeadCount {
                        let k = base + layout.keyOffset + head * headDim
                        VectorMath.rmsNorm(k, weight: kn, epsilon: epsilon, count: headDim, into: k)
                    }
                }
            }
        }
    }

    /// Rotate-half RoPE of every query and key head at its position within its sequence (after the
    /// cached tokens, if any).
    private func applyRotary(_ state: ForwardState) {
        let layout = state.layout, headDim = config.headDim, half = rotary.half
        rotary.cos.withUnsafeBufferPointer { cosines in
            rotary.sin.withUnsafeBufferPointer { sines in
                guard let cosines = cosines.baseAddress, let sines = sines.baseAddress else { return }
                for sequence in 0..<state.batch.sequenceCount {
                    let start = state.batch.offsets[sequence]
                    for position in 0..<state.batch.length(of: sequence) {
                        let base = state.qkv + (start + position) * layout.qkvWidth
                        let cos = cosines + (state.pastLength + position) * half
                        let sin = sines + (state.pastLength + position) * half
                        for head in 0..<config.headCount {
                            VectorMath.rotateHalf(base + layout.queryOffset + head * headDim, half: half, cos: cos, sin: sin)
                        }
                        for head in 0..<config.kvHeadCount {
                            VectorMath.rotateHalf(base + layout.keyOffset + head * headDim, half: half, cos: cos, sin: sin)
                        }
                    }
                }
            }
        }
    }

    /// Causal attention of every (sequence, KV head) pair, spread over `state.workers` threads;
    /// `recordAttention` stores the probabilities in `state.attentionMaps` (when allocated). With a KV
    /// cache, keys and values come from the cache (which already holds this batch's rows of `layer`).
    private func attend(_ state: ForwardState, layer: Int, recordAttention: Bool) {
        let layout = state.layout, headDim = config.headDim
        let groupSize = config.headCount / config.kvHeadCount
        let batch = state.batch
        let taskCount = batch.sequenceCount * config.kvHeadCount
        let pointers = UnsafeSendable(state)
        let run: @Sendable (Int) -> Void = { [attention, config] worker in
            let state = pointers.value
            let scratch = state.scratch + worker * state.scratchPerWorker
            var task = worker
            while task < taskCount {
                let sequence = task / config.kvHeadCount, kvHead = task % config.kvHeadCount
                task += state.workers
                let length = batch.length(of: sequence)
                guard length > 0 else { continue }
                let row0 = state.qkv + batch.offsets[sequence] * layout.qkvWidth
                let firstHead = kvHead * groupSize
                let keys: UnsafePointer<Float>, values: UnsafePointer<Float>, keyRowStride: Int
                if let cache = state.cache {
                    keys = UnsafePointer(cache.keys(layer: layer) + kvHead * headDim)
                    values = UnsafePointer(cache.values(layer: layer) + kvHead * headDim)
                    keyRowStride = cache.rowWidth
                } else {
                    keys = UnsafePointer(row0 + layout.keyOffset + kvHead * headDim)
                    values = UnsafePointer(row0 + layout.valueOffset + kvHead * headDim)
                    keyRowStride = layout.qkvWidth
                }
                attention.run(
                    queryCount: length, pastLength: state.pastLength, heads: groupSize,
                    queries: row0 + layout.queryOffset + firstHead * headDim, queryRowStride: layout.qkvWidth,
                    keys: keys, values: values, keyRowStride: keyRowStride,
                    outputs: state.attentionOutput + batch.offsets[sequence] * layout.attentionWidth + firstHead * headDim,
                    outputRowStride: layout.attentionWidth,
                    probabilities: (recordAttention ? state.attentionMaps : nil).map { $0 + state.mapOffsets[sequence] + firstHead * length * length },
                    scratch: scratch)
            }
        }
        if state.workers == 1 || taskCount < 2 {
            run(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: state.workers, execute: run)
        }
    }

    /// gate ← silu(gate) ⊙ up, in the gate half of each [gate | up] row.
    private func swiGLU(_ state: ForwardState) {
        let width = state.layout.gateUpWidth, intermediate = config.intermediateSize
        for row in 0..<state.batch.tokenCount {
            let gate = state.gateUp + row * width
            VectorMath.siluMultiply(gate: gate, up: gate + intermediate, count: intermediate, into: gate)
        }
    }

    func finalHiddenStates(_ state: ForwardState) -> Matrix {
        let hidden = config.hiddenSize, rows = state.batch.tokenCount
        let data = [Float](unsafeUninitializedCapacity: rows * hidden) { buffer, count in
            if let out = buffer.baseAddress {
                rmsNormRows(state.residual, weight: finalNorm, into: out, rows: rows)
            }
            count = rows * hidden
        }
        return Matrix(rows: rows, cols: hidden, data: data)
    }
}
