import CondenseTensor

/// One decoder block's weights, arranged for the forward pass (stacked projections).
struct LlamaBlock: Sendable {
    let attentionNorm: [Float]
    /// [q | k | v] projection, with Qwen2's biases when present.
    let qkv: Linear
    /// Qwen3 per-head RMSNorm weights ([headDim]), applied to queries and keys before RoPE.
    let queryNorm: [Float]?
    let keyNorm: [Float]?
    let attentionOutput: Linear
    let ffnNorm: [Float]
    /// [gate | up] projection.
    let gateUp: Linear
    let down: Linear

    init(_ weights: LayerWeights) {
        attentionNorm = weights.attentionNorm
        qkv = Linear(stacking: [weights.wq, weights.wk, weights.wv], biases: [weights.qBias, weights.kBias, weights.vBias])
        queryNorm = weights.qNorm
        keyNorm = weights.kNorm
        attentionOutput = Linear(weights.wo)
        ffnNorm = weights.ffnNorm
        gateUp = Linear(stacking: [weights.wGate, weights.wUp], biases: [nil, nil])
        down = Linear(weights.wDown)
    }
}

extension LlamaModel {
    /// Checks every tensor's shape against the configuration, so a malformed model fails here with the
    /// tensor's name instead of reading out of bounds later.
    public static func validate(_ weights: ModelWeights) throws(LlamaModelError) {
        let c = weights.config
        guard c.hiddenSize > 0, c.intermediateSize > 0, c.vocabSize > 0, c.headDim > 0, c.headDim % 2 == 0,
              c.headCount > 0, c.kvHeadCount > 0, c.headCount % c.kvHeadCount == 0, c.layerCount == weights.layers.count,
              c.rmsNormEps >= 0, c.ropeTheta > 0, c.maxPositionEmbeddings > 0
        else {
            throw .invalidConfiguration(
                "hidden \(c.hiddenSize), ffn \(c.intermediateSize), vocab \(c.vocabSize), heads \(c.headCount)/\(c.kvHeadCount) "
                    + "of dim \(c.headDim) (even, kv heads dividing heads), \(c.layerCount) layers for \(weights.layers.count) "
                    + "given, eps \(c.rmsNormEps), rope theta \(c.ropeTheta), max positions \(c.maxPositionEmbeddings)")
        }
        let q = c.headCount * c.headDim, kv = c.kvHeadCount * c.headDim
        func check(_ name: String, _ matrix: Matrix, _ rows: Int, _ cols: Int) throws(LlamaModelError) {
            guard matrix.rows == rows, matrix.cols == cols, matrix.data.count == rows * cols else {
                throw .shapeMismatch(tensor: name, expected: "\(rows)x\(cols)", actual: "\(matrix.rows)x\(matrix.cols)")
            }
        }
        func check(_ name: String, _ vector: [Float]?, _ count: Int) throws(LlamaModelError) {
            guard let vector else { return }
            guard vector.count == count else {
                throw .shapeMismatch(tensor: name, expected: "\(count)", actual: "\(vector.count)")
            }
        }
        try check("token_embd", weights.tokenEmbedding, c.vocabSize, c.hiddenSize)
        try check("output_norm", weights.finalNorm, c.hiddenSize)
        for (index, layer) in weights.layers.enumerated() {
            let p = "blk.\(index)."
            try check(p + "attn_norm", layer.attentionNorm, c.hiddenSize)
            try check(p + "attn_q", layer.wq, q, c.hiddenSize)
            try check(p + "attn_k", layer.wk, kv, c.hiddenSize)
            try check(p + "attn_v", layer.wv, kv, c.hiddenSize)
            try check(p + "attn_output", layer.wo, c.hiddenSize, q)
            try check(p + "attn_q.bias", layer.qBias, q)
            try check(p + "attn_k.bias", layer.kBias, kv)
            try check(p + "attn_v.bias", layer.vBias, kv)
            try check(p + "attn_q_norm", layer.qNorm, c.headDim)
            try check(p + "attn_k_norm", layer.kNorm, c.headDim)
            guard (layer.qNorm == nil) == (layer.kNorm == nil) else {
                throw .shapeMismatch(tensor: p + "attn_q_norm/attn_k_norm", expected: "both or neither", actual: "one")
            }
            try check(p + "ffn_norm", layer.ffnNorm, c.hiddenSize)
            try check(p + "ffn_gate", layer.wGate, c.intermediateSize, c.hiddenSize)
            try check(p + "ffn_up", layer.wUp, c.intermediateSize, c.hiddenSize)
            try check(p + "ffn_down", layer.wDown, c.hiddenSize, c.intermediateSize)
        }
    }
}
