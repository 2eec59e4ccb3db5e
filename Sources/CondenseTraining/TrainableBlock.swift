import CondenseModel
import CondenseTensor

/// Geometry of one packed micro-batch: texts' tokens back to back (no padding).
struct PackedTexts {
    /// Index of the first text in the step's batch.
    let firstIndex: Int
    /// Text `i` is rows `offsets[i] ..< offsets[i + 1]`.
    let offsets: [Int]
    let tokens: [Int32]
    /// Dropout row keys (global text index in the step's batch, position).
    let rowKeys: [UInt64]
    let pooledRows: [Range<Int>]

    var textCount: Int { offsets.count - 1 }
    var tokenCount: Int { offsets[offsets.count - 1] }
    var maxLength: Int { (0..<textCount).map { offsets[$0 + 1] - offsets[$0] }.max() ?? 0 }

    /// `texts` are the step's texts `firstIndex ..< firstIndex + texts.count`.
    init(_ texts: ArraySlice<TrainingText>, firstIndex: Int) {
        var offsets = [0], tokens: [Int32] = [], rowKeys: [UInt64] = [], pooledRows: [Range<Int>] = []
        for (index, text) in texts.enumerated() {
            tokens += text.tokens
            for position in text.tokens.indices { rowKeys.append(DropoutMask.rowKey(text: firstIndex + index, position: position)) }
            offsets.append(tokens.count)
            pooledRows.append(text.pooledRows)
        }
        self.firstIndex = firstIndex
        self.offsets = offsets
        self.tokens = tokens
        self.rowKeys = rowKeys
        self.pooledRows = pooledRows
    }
}

/// Sizes shared by every block of a model.
struct BlockShape {
    let hidden: Int
    let intermediate: Int
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    let rank: Int
    let targetCount: Int
    let epsilon: Float

    var queryWidth: Int { heads * headDim }
    var keyValueWidth: Int { kvHeads * headDim }
    var maxInFeatures: Int { max(hidden, queryWidth, intermediate) }
}

/// What one block's backward needs from its forward, for all rows of a micro-batch. Cheap inputs of
/// the projections (the two RMSNorm outputs and silu(gate) ⊙ up) are recomputed in backward rather
/// than kept. Without `keep` (the embedding pass of gradient caching) one instance serves every layer
/// and attention keeps a single probability block.
final class BlockActivations {
    let input, middle: UnsafeMutablePointer<Float>            // residual stream before / after attention [T x hidden]
    let attentionInverseRMS, ffnInverseRMS: UnsafeMutablePointer<Float>  // [T]
    let queries, keys, values: UnsafeMutablePointer<Float>   // after bias, q/k norm and RoPE
    let rawQueries, rawKeys: UnsafeMutablePointer<Float>     // Qwen3: before the per-head norm
    let queryInverseRMS, keyInverseRMS: UnsafeMutablePointer<Float>  // Qwen3: [T x heads], [T x kvHeads]
    let probabilities: UnsafeMutablePointer<Float>
    let attention: UnsafeMutablePointer<Float>               // concatenated heads [T x heads·headDim]
    let gate, up: UnsafeMutablePointer<Float>                // [T x intermediate]
    /// u = drop(x)·Aᵀ of each adapted target (in configuration order), [T x rank] each.
    let adapterHidden: UnsafeMutablePointer<Float>

    init(shape s: BlockShape, batch: PackedTexts, probabilityCount: Int, headNorm: Bool, arena: Arena) {
        let t = batch.tokenCount
        input = arena.take(t * s.hidden)
        middle = arena.take(t * s.hidden)
        attentionInverseRMS = arena.take(t)
        ffnInverseRMS = arena.take(t)
        queries = arena.take(t * s.queryWidth)
        keys = arena.take(t * s.keyValueWidth)
        values = arena.take(t * s.keyValueWidth)
        rawQueries = arena.take(headNorm ? t * s.queryWidth : 0)
        rawKeys = arena.take(headNorm ? t * s.keyValueWidth : 0)
        queryInverseRMS = arena.take(headNorm ? t * s.heads : 0)
        keyInverseRMS = arena.take(headNorm ? t * s.kvHeads : 0)
        probabilities = arena.take(probabilityCount)
        attention = arena.take(t * s.queryWidth)
        gate = arena.take(t * s.intermediate)
        up = arena.take(t * s.intermediate)
        adapterHidden = arena.take(t * s.targetCount * s.rank)
    }
}

/// Per-pass buffers every layer reuses: the RMSNorm output and the MLP hidden state (recomputed in
/// backward), and the projections' scratch.
final class PassScratch {
    let normed: UnsafeMutablePointer<Float>   // [T x hidden]
    let hidden: UnsafeMutablePointer<Float>   // [T x intermediate]
    let linear: UnsafeMutablePointer<Float>

    init(shape s: BlockShape, batch: PackedTexts, arena: Arena) {
        let t = batch.tokenCount
        normed = arena.take(t * s.hidden)
        hidden = arena.take(t * s.intermediate)
        linear = arena.take(LoRALinear.scratchCount(rows: t, maxInFeatures: s.maxInFeatures, rank: s.rank))
    }
}

/// Gradient buffers of one micro-batch's backward pass, reused by every layer.
final class BackwardScratch {
    let hiddenGradient, upGradient: UnsafeMutablePointer<Float>      // [T x intermediate]
    let normedGradient: UnsafeMutablePointer<Float>                  // [T x hidden]
    let attentionGradient, queryGradient: UnsafeMutablePointer<Float>  // [T x heads·headDim]
    let keyGradient, valueGradient: UnsafeMutablePointer<Float>      // [T x kvHeads·headDim]
    let attentionScratch: UnsafeMutablePointer<Float>                // [L x L]

    init(shape s: BlockShape, batch: PackedTexts, arena: Arena) {
        let t = batch.tokenCount, longest = batch.maxLength
        hiddenGradient = arena.take(t * s.intermediate)
        upGradient = arena.take(t * s.intermediate)
        normedGradient = arena.take(t * s.hidden)
        attentionGradient = arena.take(t * s.queryWidth)
        queryGradient = arena.take(t * s.queryWidth)
        keyGradient = arena.take(t * s.keyValueWidth)
        valueGradient = arena.take(t * s.keyValueWidth)
        attentionScratch = arena.take(longest * longest)
    }
}

/// The adapters of one block, indexed by `LoRATarget.order`: factors (nil = not adapted) and which
/// [T x rank] slice of `BlockActivations.adapterHidden` holds the target's u.
struct BlockAdapters {
    let factorsByTarget: [LoRAFactors?]
    let hiddenSlotByTarget: [Int]

    func factors(_ target: LoRATarget) -> LoRAFactors? { factorsByTarget[target.order] }
    func hiddenSlot(_ target: LoRATarget) -> Int { hiddenSlotByTarget[target.order] }
}

/// One Llama decoder block with frozen weights, as math:
///   x₁ = x₀ + W_o·Attention(RoPE(W_q·n₁), RoPE(W_k·n₁), W_v·n₁),  n₁ = RMSNorm(x₀)
///   x₂ = x₁ + W_down·(silu(W_gate·n₂) ⊙ W_up·n₂),                  n₂ = RMSNorm(x₁)
/// with LoRA on the chosen projections. `forward` saves what `backward` reads; `backward` turns
/// ∂L/∂x₂ into ∂L/∂x₀ in place and accumulates the adapters' gradients.
struct TrainableBlock: Sendable {
    let attentionNorm: [Float]
    let ffnNorm: [Float]
    let queryNorm: [Float]?
    let keyNorm: [Float]?
    let q, k, v, o, gate, up, down: LoRALinear

    init(_ weights: LayerWeights) {
        attentionNorm = weights.attentionNorm
        ffnNorm = weights.ffnNorm
        queryNorm = weights.qNorm
        keyNorm = weights.kNorm
        q = LoRALinear(weight: weights.wq, bias: weights.qBias)
        k = LoRALinear(weight: weights.wk, bias: weights.kBias)
        v = LoRALinear(weight: weights.wv, bias: weights.vBias)
        o = LoRALinear(weight: weights.wo, bias: nil)
        gate = LoRALinear(weight: weights.wGate, bias: nil)
        up = LoRALinear(weight: weights.wUp, bias: nil)
        down = LoRALinear(weight: weights.wDown, bias: nil)
    }

    func linear(_ target: LoRATarget) -> LoRALinear {
        switch target {
        case .q: q
        case .k: k
        case .v: v
        case .o: o
        case .gate: gate
        case .up: up
        case .down: down
        }
    }

    /// x₀ → x₂. `middle` and `output` may equal `input` (no saved activations); otherwise they are distinct.
    func forward(
        _ a: BlockActivations, input: UnsafeMutablePointer<Float>, middle: UnsafeMutablePointer<Float>,
        output: UnsafeMutablePointer<Float>, batch: PackedTexts, shape s: BlockShape, adapters: BlockAdapters,
        rope: RopeOp, attention: AttentionOp, keepProbabilities: Bool, scratch: PassScratch
    ) {
        let t = batch.tokenCount
        batch.rowKeys.withUnsafeBufferPointer { keys in
            guard let rowKeys = keys.baseAddress else { return }
            func project(_ target: LoRATarget, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, accumulate: Bool) {
                linear(target).forward(
                    x, rows: t, into: y, accumulate: accumulate, adapter: adapters.factors(target),
                    adapterHidden: a.adapterHidden + adapters.hiddenSlot(target) * t * s.rank,
                    rowKeys: rowKeys, scratch: scratch.linear)
            }
            normalize(input, attentionNorm, into: scratch.normed, inverseRMS: a.attentionInverseRMS, rows: t, s)
            project(.q, scratch.normed, a.queries, accumulate: false)
            project(.k, scratch.normed, a.keys, accumulate: false)
            project(.v, scratch.normed, a.values, accumulate: false)
            if let queryNorm, let keyNorm {
                a.rawQueries.update(from: a.queries, count: t * s.queryWidth)
                a.rawKeys.update(from: a.keys, count: t * s.keyValueWidth)
                headNorm(queryNorm, a.queries, rows: t * s.heads, inverseRMS: a.queryInverseRMS, s)
                headNorm(keyNorm, a.keys, rows: t * s.kvHeads, inverseRMS: a.keyInverseRMS, s)
            }
            rope.apply(a.queries, stride: s.queryWidth, heads: s.heads, headDim: s.headDim, offsets: batch.offsets, inverse: false)
            rope.apply(a.keys, stride: s.keyValueWidth, heads: s.kvHeads, headDim: s.headDim, offsets: batch.offsets, inverse: false)
            attention.forward(queries: a.queries, keys: a.keys, values: a.values, offsets: batch.offsets,
                              output: a.attention, probabilities: a.probabilities, keep: keepProbabilities)
            if middle != input { middle.update(from: input, count: t * s.hidden) }
            project(.o, a.attention, middle, accumulate: true)

            normalize(middle, ffnNorm, into: scratch.normed, inverseRMS: a.ffnInverseRMS, rows: t, s)
            project(.gate, scratch.normed, a.gate, accumulate: false)
            project(.up, scratch.normed, a.up, accumulate: false)
            SwiGLUOp.forward(gate: a.gate, up: a.up, count: t * s.intermediate, into: scratch.hidden)
            if output != middle { output.update(from: middle, count: t * s.hidden) }
            project(.down, scratch.hidden, output, accumulate: true)
        }
    }

    /// ∂L/∂x₂ in `gradient` becomes ∂L/∂x₀ (skipped when `needsInputGradient` is false: the first block,
    /// whose input is a frozen embedding). Adapter gradients accumulate into the factors' buffers.
    func backward(
        _ a: BlockActivations, gradient: UnsafeMutablePointer<Float>, needsInputGradient: Bool, batch: PackedTexts,
        shape s: BlockShape, adapters: BlockAdapters, rope: RopeOp, attention: AttentionOp, scratch: PassScratch,
        gradients b: BackwardScratch
    ) {
        let t = batch.tokenCount
        batch.rowKeys.withUnsafeBufferPointer { keys in
            guard let rowKeys = keys.baseAddress else { return }
            func backProject(
                _ target: LoRATarget, input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
                inputGradient: UnsafeMutablePointer<Float>?, accumulate: Bool
            ) {
                linear(target).backward(
                    input: input, adapterHidden: a.adapterHidden + adapters.hiddenSlot(target) * t * s.rank,
                    outputGradient: outputGradient, rows: t, inputGradient: inputGradient, accumulate: accumulate,
                    adapter: adapters.factors(target), rowKeys: rowKeys, scratch: scratch.linear)
            }
            // MLP: x₂ = x₁ + down(h), h and n₂ recomputed.
            SwiGLUOp.forward(gate: a.gate, up: a.up, count: t * s.intermediate, into: scratch.hidden)
            normalize(a.middle, ffnNorm, into: scratch.normed, inverseRMS: nil, rows: t, s)
            backProject(.down, input: scratch.hidden, outputGradient: gradient, inputGradient: b.hiddenGradient, accumulate: false)
            SwiGLUOp.backward(gate: a.gate, up: a.up, hiddenGradient: b.hiddenGradient, count: t * s.intermediate,
                              gateGradient: b.hiddenGradient, upGradient: b.upGradient)
            backProject(.gate, input: scratch.normed, outputGradient: b.hiddenGradient, inputGradient: b.normedGradient, accumulate: false)
            backProject(.up, input: scratch.normed, outputGradient: b.upGradient, inputGradient: b.normedGradient, accumulate: true)
            ffnNorm.withUnsafeBufferPointer { w in
                guard let w = w.baseAddress else { return }
                RMSNormOp.backward(input: a.middle, weight: w, inverseRMS: a.ffnInverseRMS, outputGradient: b.normedGradient,
                                   rows: t, width: s.hidden, stride: s.hidden, into: gradient, accumulate: true)
            }
            // Attention: x₁ = x₀ + o(attention).
            backProject(.o, input: a.attention, outputGradient: gradient, inputGradient: b.attentionGradient, accumulate: false)
            attention.backward(queries: a.queries, keys: a.keys, values: a.values, offsets: batch.offsets,
                               probabilities: a.probabilities, outputGradient: b.attentionGradient,
                               queryGradient: b.queryGradient, keyGradient: b.keyGradient, valueGradient: b.valueGradient,
                               scratch: b.attentionScratch)
            rope.apply(b.queryGradient, stride: s.queryWidth, heads: s.heads, headDim: s.headDim, offsets: batch.offsets, inverse: true)
            rope.apply(b.keyGradient, stride: s.keyValueWidth, heads: s.kvHeads, headDim: s.headDim, offsets: batch.offsets, inverse: true)
            if let queryNorm, let keyNorm {
                headNormBackward(queryNorm, a.rawQueries, a.queryInverseRMS, b.queryGradient, rows: t * s.heads, s)
                headNormBackward(keyNorm, a.rawKeys, a.keyInverseRMS, b.keyGradient, rows: t * s.kvHeads, s)
            }
            normalize(a.input, attentionNorm, into: scratch.normed, inverseRMS: nil, rows: t, s)
            let normedGradient: UnsafeMutablePointer<Float>? = needsInputGradient ? b.normedGradient : nil
            backProject(.q, input: scratch.normed, outputGradient: b.queryGradient, inputGradient: normedGradient, accumulate: false)
            backProject(.k, input: scratch.normed, outputGradient: b.keyGradient, inputGradient: normedGradient, accumulate: true)
            backProject(.v, input: scratch.normed, outputGradient: b.valueGradient, inputGradient: normedGradient, accumulate: true)
            guard needsInputGradient else { return }
            attentionNorm.withUnsafeBufferPointer { w in
                guard let w = w.baseAddress else { return }
                RMSNormOp.backward(input: a.input, weight: w, inverseRMS: a.attentionInverseRMS, outputGradient: b.normedGradient,
                                   rows: t, width: s.hidden, stride: s.hidden, into: gradient, accumulate: true)
            }
        }
    }

    /// RMSNorm of [rows x hidden] (recording r when asked).
    private func normalize(
        _ x: UnsafePointer<Float>, _ weight: [Float], into output: UnsafeMutablePointer<Float>,
        inverseRMS: UnsafeMutablePointer<Float>?, rows: Int, _ s: BlockShape
    ) {
        weight.withUnsafeBufferPointer { w in
            guard let w = w.baseAddress else { return }
            RMSNormOp.forward(x, weight: w, epsilon: s.epsilon, rows: rows, width: s.hidden, stride: s.hidden,
                              into: output, inverseRMS: inverseRMS)
        }
    }

    /// Qwen3 per-head RMSNorm of [rows x headDim] head vectors, in place.
    private func headNorm(
        _ weight: [Float], _ x: UnsafeMutablePointer<Float>, rows: Int, inverseRMS: UnsafeMutablePointer<Float>, _ s: BlockShape
    ) {
        weight.withUnsafeBufferPointer { w in
            guard let w = w.baseAddress else { return }
            RMSNormOp.forward(x, weight: w, epsilon: s.epsilon, rows: rows, width: s.headDim, stride: s.headDim,
                              into: x, inverseRMS: inverseRMS)
        }
    }

    /// Gradient through the per-head norm, in place (each row's dot product is taken before it is overwritten).
    private func headNormBackward(
        _ weight: [Float], _ raw: UnsafePointer<Float>, _ inverseRMS: UnsafePointer<Float>,
        _ gradient: UnsafeMutablePointer<Float>, rows: Int, _ s: BlockShape
    ) {
        weight.withUnsafeBufferPointer { w in
            guard let w = w.baseAddress else { return }
            RMSNormOp.backward(input: raw, weight: w, inverseRMS: inverseRMS, outputGradient: gradient, rows: rows,
                               width: s.headDim, stride: s.headDim, into: gradient, accumulate: false)
        }
    }
}
