import CondenseTensor

/// A container of named tensors: a GGUF file or a set of safetensors shards.
protocol TensorSource {
    /// Outermost-first shape (PyTorch order), or nil when there is no such tensor.
    func shape(of name: String) -> [Int]?
    /// The tensor's elements as row-major F32.
    func loadF32(_ name: String) throws(ModelLoadError) -> [Float]
}

/// The tensors a decoder block needs, independent of file format.
enum TensorRole: CaseIterable {
    case tokenEmbedding, finalNorm, outputProjection
    case attentionNorm, query, key, value, attentionOutput, queryBias, keyBias, valueBias, queryNorm, keyNorm
    case ffnNorm, gate, up, down
}

/// How a format names each tensor role (`layer` is nil for the model-level roles).
struct TensorNaming: Sendable {
    let name: @Sendable (TensorRole, Int) -> String

    static let gguf = TensorNaming { role, layer in
        switch role {
        case .tokenEmbedding: return "token_embd.weight"
        case .finalNorm: return "output_norm.weight"
        case .outputProjection: return "output.weight"
        case .attentionNorm: return "blk.\(layer).attn_norm.weight"
        case .query: return "blk.\(layer).attn_q.weight"
        case .key: return "blk.\(layer).attn_k.weight"
        case .value: return "blk.\(layer).attn_v.weight"
        case .attentionOutput: return "blk.\(layer).attn_output.weight"
        case .queryBias: return "blk.\(layer).attn_q.bias"
        case .keyBias: return "blk.\(layer).attn_k.bias"
        case .valueBias: return "blk.\(layer).attn_v.bias"
        case .queryNorm: return "blk.\(layer).attn_q_norm.weight"
        case .keyNorm: return "blk.\(layer).attn_k_norm.weight"
        case .ffnNorm: return "blk.\(layer).ffn_norm.weight"
        case .gate: return "blk.\(layer).ffn_gate.weight"
        case .up: return "blk.\(layer).ffn_up.weight"
        case .down: return "blk.\(layer).ffn_down.weight"
        }
    }

    static let huggingFace = TensorNaming { role, layer in
        let prefix = "model.layers.\(layer)."
        switch role {
        case .tokenEmbedding: return "model.embed_tokens.weight"
        case .finalNorm: return "model.norm.weight"
        case .outputProjection: return "lm_head.weight"
        case .attentionNorm: return prefix + "input_layernorm.weight"
        case .query: return prefix + "self_attn.q_proj.weight"
        case .key: return prefix + "self_attn.k_proj.weight"
        case .value: return prefix + "self_attn.v_proj.weight"
        case .attentionOutput: return prefix + "self_attn.o_proj.weight"
        case .queryBias: return prefix + "self_attn.q_proj.bias"
        case .keyBias: return prefix + "self_attn.k_proj.bias"
        case .valueBias: return prefix + "self_attn.v_proj.bias"
        case .queryNorm: return prefix + "self_attn.q_norm.weight"
        case .keyNorm: return prefix + "self_attn.k_norm.weight"
        case .ffnNorm: return prefix + "post_attention_layernorm.weight"
        case .gate: return prefix + "mlp.gate_proj.weight"
        case .up: return prefix + "mlp.up_proj.weight"
        case .down: return prefix + "mlp.down_proj.weight"
        }
    }
}

/// Builds `ModelWeights` from a tensor source, checking every tensor's presence and shape against
/// the config before reading its data.
struct WeightAssembler {
    let config: ModelConfig
    let source: any TensorSource
    let naming: TensorNaming
    /// True for llama.cpp Llama-family files, whose Q/K rows are interleaved for adjacent-pair RoPE.
    let queryKeyRowsInterleaved: Bool

    func assemble() throws(ModelLoadError) -> ModelWeights {
        try Self.validate(config)
        let hidden = config.hiddenSize
        let queryWidth = config.headCount * config.headDim
        let keyValueWidth = config.kvHeadCount * config.headDim

        let embedding = try matrix(.tokenEmbedding, rows: config.vocabSize, cols: hidden)
        var layers: [LayerWeights] = []
        layers.reserveCapacity(config.layerCount)
        for layer in 0..<config.layerCount {
            var query = try matrix(.query, layer, rows: queryWidth, cols: hidden)
            var key = try matrix(.key, layer, rows: keyValueWidth, cols: hidden)
            var queryBias = try optionalVector(.queryBias, layer, count: queryWidth, required: config.architecture == .qwen2)
            var keyBias = try optionalVector(.keyBias, layer, count: keyValueWidth, required: config.architecture == .qwen2)
            if queryKeyRowsInterleaved {
                query.data = Self.deinterleaveRotaryRows(query.data, heads: config.headCount, headDim: config.headDim, cols: hidden)
                key.data = Self.deinterleaveRotaryRows(key.data, heads: config.kvHeadCount, headDim: config.headDim, cols: hidden)
                queryBias = queryBias.map { Self.deinterleaveRotaryRows($0, heads: config.headCount, headDim: config.headDim, cols: 1) }
                keyBias = keyBias.map { Self.deinterleaveRotaryRows($0, heads: config.kvHeadCount, headDim: config.headDim, cols: 1) }
            }
            layers.append(LayerWeights(
                attentionNorm: try vector(.attentionNorm, layer, count: hidden),
                wq: query,
                wk: key,
                wv: try matrix(.value, layer, rows: keyValueWidth, cols: hidden),
                wo: try matrix(.attentionOutput, layer, rows: hidden, cols: queryWidth),
                qBias: queryBias,
                kBias: keyBias,
                vBias: try optionalVector(.valueBias, layer, count: keyValueWidth, required: config.architecture == .qwen2),
                qNorm: try optionalVector(.queryNorm, layer, count: config.headDim, required: config.architecture == .qwen3),
                kNorm: try optionalVector(.keyNorm, layer, count: config.headDim, required: config.architecture == .qwen3),
                ffnNorm: try vector(.ffnNorm, layer, count: hidden),
                wGate: try matrix(.gate, layer, rows: config.intermediateSize, cols: hidden),
                wUp: try matrix(.up, layer, rows: config.intermediateSize, cols: hidden),
                wDown: try matrix(.down, layer, rows: hidden, cols: config.intermediateSize)
            ))
        }
        let output = config.tieWordEmbeddings ? nil : try matrix(.outputProjection, rows: config.vocabSize, cols: hidden)
        return ModelWeights(
            config: config, tokenEmbedding: embedding, layers: layers,
            finalNorm: try vector(.finalNorm, count: hidden), outputProjection: output)
    }

    /// Undoes llama.cpp's `permute` of Q/K rows. Within each head of `headDim` rows, HF (rotate-half)
    /// row `i * headDim/2 + j` was stored at row `2j + i`, so that ggml's adjacent-pair RoPE sees
    /// the pairs HF rotates together.
    static func deinterleaveRotaryRows(_ data: [Float], heads: Int, headDim: Int, cols: Int) -> [Float] {
        let halfDim = headDim / 2
        var result = [Float](repeating: 0, count: data.count)
        data.withUnsafeBufferPointer { source in
            result.withUnsafeMutableBufferPointer { destination in
                for head in 0..<heads {
                    for half in 0..<2 {
                        for pair in 0..<halfDim {
                            let from = (head * headDim + 2 * pair + half) * cols
                            let to = (head * headDim + half * halfDim + pair) * cols
                            for col in 0..<cols { destination[to + col] = source[from + col] }
                        }
                    }
                }
            }
        }
        return result
    }

    static func validate(_ config: ModelConfig) throws(ModelLoadError) {
        let positive: [(String, Int)] = [
            ("vocab_size", config.vocabSize), ("hidden_size", config.hiddenSize),
            ("intermediate_size", config.intermediateSize), ("num_hidden_layers", config.layerCount),
            ("num_attention_heads", config.headCount), ("num_key_value_heads", config.kvHeadCount),
            ("head_dim", config.headDim), ("max_position_embeddings", config.maxPositionEmbeddings),
        ]
        for (key, value) in positive where value <= 0 {
            throw .invalidMetadata(key: key, detail: "must be positive, is \(value)")
        }
        guard config.headCount % config.kvHeadCount == 0 else {
            throw .invalidMetadata(key: "num_key_value_heads", detail: "\(config.kvHeadCount) does not divide num_attention_heads \(config.headCount)")
        }
        guard config.headDim % 2 == 0 else {
            throw .invalidMetadata(key: "head_dim", detail: "RoPE needs an even head dimension, is \(config.headDim)")
        }
        guard config.rmsNormEps > 0, config.rmsNormEps.isFinite else {
            throw .invalidMetadata(key: "rms_norm_eps", detail: "must be positive, is \(config.rmsNormEps)")
        }
        guard config.ropeTheta > 0, config.ropeTheta.isFinite else {
            throw .invalidMetadata(key: "rope_theta", detail: "must be positive, is \(config.ropeTheta)")
        }
    }

    private func checkedLoad(_ role: TensorRole, _ layer: Int, shape expected: [Int]) throws(ModelLoadError) -> [Float] {
        let name = naming.name(role, layer)
        guard let actual = source.shape(of: name) else { throw .missingTensor(name: name) }
        guard actual == expected else { throw .shapeMismatch(tensor: name, expected: expected, actual: actual) }
        return try source.loadF32(name)
    }

    private func matrix(_ role: TensorRole, _ layer: Int = 0, rows: Int, cols: Int) throws(ModelLoadError) -> Matrix {
        Matrix(rows: rows, cols: cols, data: try checkedLoad(role, layer, shape: [rows, cols]))
    }

    private func vector(_ role: TensorRole, _ layer: Int = 0, count: Int) throws(ModelLoadError) -> [Float] {
        try checkedLoad(role, layer, shape: [count])
    }

    private func optionalVector(_ role: TensorRole, _ layer: Int, count: Int, required: Bool) throws(ModelLoadError) -> [Float]? {
        guard required || source.shape(of: naming.name(role, layer)) != nil else { return nil }
        return try vector(role, layer, count: count)
    }
}
