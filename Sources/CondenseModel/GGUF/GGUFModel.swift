import CondenseTokenizer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension GGUFFile: TensorSource {
    func shape(of name: String) -> [Int]? { tensorInfo(named: name)?.shape }
    func loadF32(_ name: String) throws(ModelLoadError) -> [Float] { try tensorF32(named: name) }
}

extension GGUFFile {
    /// The decoder hyperparameters, from `general.architecture` and the `<arch>.*` keys.
    public func modelConfig() throws(ModelLoadError) -> ModelConfig {
        guard let architectureName = try string("general.architecture") else {
            throw .missingMetadata(key: "general.architecture")
        }
        guard let architecture = Architecture(rawValue: architectureName) else {
            throw .unsupportedArchitecture(name: architectureName)
        }
        let prefix = architectureName + "."
        func required(_ key: String) throws(ModelLoadError) -> Int {
            guard let value = try int(prefix + key) else { throw .missingMetadata(key: prefix + key) }
            return value
        }
        let hidden = try required("embedding_length")
        let headCount = try required("attention.head_count")
        guard headCount > 0 else { throw .invalidMetadata(key: prefix + "attention.head_count", detail: "must be positive, is \(headCount)") }
        let headDim = try int(prefix + "attention.key_length") ?? hidden / headCount
        if let valueLength = try int(prefix + "attention.value_length"), valueLength != headDim {
            throw .invalidMetadata(key: prefix + "attention.value_length", detail: "\(valueLength) differs from key_length \(headDim)")
        }
        if let rotaryDims = try int(prefix + "rope.dimension_count"), rotaryDims != headDim {
            throw .invalidMetadata(key: prefix + "rope.dimension_count", detail: "partial RoPE (\(rotaryDims) of \(headDim) dimensions) is not supported")
        }
        guard let epsilon = try float(prefix + "attention.layer_norm_rms_epsilon") else {
            throw .missingMetadata(key: prefix + "attention.layer_norm_rms_epsilon")
        }
        let ropeTheta = try float(prefix + "rope.freq_base") ?? 10_000
        guard let embedding = tensorInfo(named: "token_embd.weight") else { throw .missingTensor(name: "token_embd.weight") }
        let vocabSize = try int(prefix + "vocab_size") ?? embedding.shape[0]

        var config = ModelConfig(
            architecture: architecture, vocabSize: vocabSize, hiddenSize: hidden,
            intermediateSize: try required("feed_forward_length"), layerCount: try required("block_count"),
            headCount: headCount, kvHeadCount: try int(prefix + "attention.head_count_kv") ?? headCount,
            headDim: headDim, rmsNormEps: epsilon, ropeTheta: ropeTheta, ropeScaling: nil,
            maxPositionEmbeddings: try required("context_length"),
            tieWordEmbeddings: tensorInfo(named: "output.weight") == nil)
        if let scalingType = try string(prefix + "rope.scaling.type"), scalingType != "none" {
            throw .invalidMetadata(key: prefix + "rope.scaling.type", detail: "RoPE scaling '\(scalingType)' is not supported")
        }
        if tensorInfo(named: "rope_freqs.weight") != nil {
            config.ropeScaling = try llama3Scaling(headDim: headDim, ropeTheta: ropeTheta)
        }
        try WeightAssembler.validate(config)
        return config
    }

    /// All weights as F32 in HF layout (Q/K rows restored to rotate-half order for Llama files).
    public func modelWeights() throws(ModelLoadError) -> ModelWeights {
        let config = try modelConfig()
        return try WeightAssembler(
            config: config, source: self, naming: .gguf,
            queryKeyRowsInterleaved: Self.converterInterleavesQueryKeyRows(config.architecture)
        ).assemble()
    }

    /// llama.cpp's convert_hf_to_gguf.py permutes attn_q/attn_k rows (weights and biases) only in
    /// `LlamaModel.modify_tensors`, so that ggml's adjacent-pair ("normal") RoPE matches HF's
    /// rotate-half. `Qwen2Model` (and `Qwen3Model`, its subclass) only rename tensors: Qwen runs
    /// with NEOX RoPE, which already is rotate-half.
    static func converterInterleavesQueryKeyRows(_ architecture: Architecture) -> Bool {
        switch architecture {
        case .llama: return true
        case .qwen2, .qwen3: return false
        }
    }

    /// The byte-level BPE tokenizer declared by the `tokenizer.ggml.*` keys.
    public func tokenizerSpec() throws(ModelLoadError) -> TokenizerSpec {
        let model = try string("tokenizer.ggml.model")
        guard model == nil || model == "gpt2" else {
            throw .invalidTokenizer(detail: "tokenizer.ggml.model '\(model ?? "")' is not supported (only byte-level BPE 'gpt2')")
        }
        guard let tokens = try stringArray("tokenizer.ggml.tokens") else { throw .missingMetadata(key: "tokenizer.ggml.tokens") }
        let merges = try stringArray("tokenizer.ggml.merges") ?? []
        let types = try int32Array("tokenizer.ggml.token_type") ?? [Int32](repeating: 1, count: tokens.count)
        guard types.count == tokens.count else {
            throw .invalidMetadata(key: "tokenizer.ggml.token_type", detail: "\(types.count) entries for \(tokens.count) tokens")
        }
        func tokenID(_ key: String) throws(ModelLoadError) -> Int32? {
            guard let id = try int(key) else { return nil }
            guard id >= 0, id < tokens.count else {
                throw .invalidMetadata(key: key, detail: "token id \(id) is outside the vocabulary of \(tokens.count)")
            }
            return Int32(id)
        }
        return TokenizerSpec(
            tokens: tokens, merges: merges, tokenTypes: types,
            preTokenizer: try string("tokenizer.ggml.pre") ?? "default",
            bosTokenID: try tokenID("tokenizer.ggml.bos_token_id"),
            eosTokenID: try tokenID("tokenizer.ggml.eos_token_id"),
            addBOS: try bool("tokenizer.ggml.add_bos_token") ?? false,
            addEOS: try bool("tokenizer.ggml.add_eos_token") ?? false)
    }

    /// llama.cpp stores Llama 3.x RoPE scaling as precomputed per-frequency divisors (`rope_freqs`)
    /// rather than as parameters. Every released Llama 3.x model uses low/high frequency factors 1/4
    /// and an original context of 8192; the factor is the largest divisor. The result is accepted only
    /// if it reproduces every stored divisor.
    private func llama3Scaling(headDim: Int, ropeTheta: Float) throws(ModelLoadError) -> Llama3RopeScaling {
        let key = "rope_freqs.weight"
        let divisors = try tensorF32(named: key)
        guard divisors.count == headDim / 2, let factor = divisors.max(), factor >= 1 else {
            throw .invalidMetadata(key: key, detail: "expected \(headDim / 2) divisors >= 1, found \(divisors.count)")
        }
        let scaling = Llama3RopeScaling(factor: factor, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192)
        let expected = Self.llama3Divisors(scaling, headDim: headDim, ropeTheta: ropeTheta)
        for (index, (stored, derived)) in zip(divisors, expected).enumerated() where abs(stored - derived) > 1e-3 * derived {
            throw .invalidMetadata(key: key, detail: "divisor \(index) is \(stored), Llama 3 scaling with factor \(factor) gives \(derived)")
        }
        return scaling
    }

    /// The per-frequency divisors that Llama 3 scaling applies (as computed by HF and llama.cpp).
    static func llama3Divisors(_ scaling: Llama3RopeScaling, headDim: Int, ropeTheta: Float) -> [Float] {
        let context = Double(scaling.originalMaxPositionEmbeddings)
        let lowWavelength = context / Double(scaling.lowFreqFactor)
        let highWavelength = context / Double(scaling.highFreqFactor)
        return (0..<(headDim / 2)).map { index in
            let frequency = 1 / pow(Double(ropeTheta), Double(2 * index) / Double(headDim))
            let wavelength = 2 * Double.pi / frequency
            if wavelength < highWavelength { return 1 }
            if wavelength > lowWavelength { return scaling.factor }
            let smooth = (context / wavelength - Double(scaling.lowFreqFactor)) / Double(scaling.highFreqFactor - scaling.lowFreqFactor)
            return Float(1 / ((1 - smooth) / Double(scaling.factor) + smooth))
        }
    }
}
