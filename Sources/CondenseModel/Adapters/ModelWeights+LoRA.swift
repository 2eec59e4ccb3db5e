import CondenseTensor

extension ModelWeights {
    /// Adds scaling · B·A of every adapted projection into its weight, so the model runs with the adapter at
    /// no cost per token. Everything is validated before any weight changes: on error the weights are as before.
    ///
    /// No row permutation is needed, GGUF models included: `ModelWeights` keeps Q/K rows in Hugging Face's
    /// rotate-half order (the GGUF loader undoes llama.cpp's interleaving permutation), which is the order of
    /// q_proj/k_proj outputs in the HF model a PEFT adapter was trained against, and so of lora_B's rows.
    public mutating func mergeLoRA(_ adapter: PEFTAdapter) throws(AdapterError) {
        try adapter.validate(against: config)
        for (layer, modules) in adapter.layers.enumerated() {
            for module in modules.keys.sorted() {
                let weight = layers[layer][keyPath: module.weight]
                let (inFeatures, outFeatures) = module.features(in: config)
                guard weight.rows == outFeatures, weight.cols == inFeatures else {
                    throw .shapeMismatch(tensor: "model layer \(layer) \(module.rawValue) weight",
                                         expected: [outFeatures, inFeatures], actual: [weight.rows, weight.cols])
                }
            }
        }
        let scaling = adapter.configuration.scaling
        for (layer, modules) in adapter.layers.enumerated() {
            for (module, factors) in modules {
                Self.addScaledProduct(scaling, b: factors.b, a: factors.a, into: &layers[layer][keyPath: module.weight])
            }
        }
    }

    /// The weights with `adapter` merged (see `mergeLoRA`); only the adapted matrices are copied.
    public func mergingLoRA(_ adapter: PEFTAdapter) throws(AdapterError) -> ModelWeights {
        var merged = self
        try merged.mergeLoRA(adapter)
        return merged
    }

    /// W [out x in] += s · B [out x rank] · A [rank x in], one sgemm.
    private static func addScaledProduct(_ scaling: Float, b: Matrix, a: Matrix, into weight: inout Matrix) {
        let rank = a.rows, outFeatures = weight.rows, inFeatures = weight.cols
        b.data.withUnsafeBufferPointer { b in
            a.data.withUnsafeBufferPointer { a in
                weight.data.withUnsafeMutableBufferPointer { w in
                    guard let b = b.baseAddress, let a = a.baseAddress, let w = w.baseAddress else { return }
                    GEMM.multiply(m: outFeatures, n: inFeatures, k: rank, alpha: scaling, a: b, lda: rank,
                                  b: a, ldb: inFeatures, beta: 1, c: w, ldc: inFeatures)
                }
            }
        }
    }
}
