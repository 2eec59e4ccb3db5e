import CondenseModel
import CondenseTensor

/// One adapter's factors and gradient accumulators, as raw pointers into the flat adapter vectors.
struct LoRAFactors {
    let a: UnsafePointer<Float>                    // [rank x in]
    let b: UnsafePointer<Float>                    // [out x rank]
    let gradientA: UnsafeMutablePointer<Float>?    // nil: forward only
    let gradientB: UnsafeMutablePointer<Float>?
    let rank: Int
    let scaling: Float
    let dropout: DropoutMask?
}

/// y = x·Wᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ with W, b frozen (s = alpha / rank). With u = drop(x)·Aᵀ saved
/// and G = ∂L/∂y:
///   ∂L/∂x = G·W + mask ⊙ (s·(G·B)·A),  ∂L/∂B += s·Gᵀ·u,  ∂L/∂A += s·(G·B)ᵀ·drop(x).
/// No gradient is formed for W or b. All row blocks are dense ([rows x in], [rows x out]).
struct LoRALinear: Sendable {
    /// Frozen [out][in].
    let weight: Matrix
    let bias: [Float]?

    var inFeatures: Int { weight.cols }
    var outFeatures: Int { weight.rows }

    /// Floats of `scratch` that `forward`/`backward` need for `rows` rows.
    static func scratchCount(rows: Int, maxInFeatures: Int, rank: Int) -> Int { rows * (maxInFeatures + rank) }

    /// output (+= when `accumulate`) y. `adapterHidden` [rows x rank] receives u (needed by backward).
    func forward(
        _ input: UnsafePointer<Float>, rows: Int, into output: UnsafeMutablePointer<Float>, accumulate: Bool,
        adapter: LoRAFactors?, adapterHidden: UnsafeMutablePointer<Float>, rowKeys: UnsafePointer<UInt64>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        weight.data.withUnsafeBufferPointer { w in
            guard let w = w.baseAddress else { return }
            GEMM.linear(input, rows: rows, weight: w, outFeatures: outFeatures, inFeatures: inFeatures,
                        into: output, accumulate: accumulate)
        }
        if let bias {
            bias.withUnsafeBufferPointer { b in
                guard let b = b.baseAddress else { return }
                for row in 0..<rows { VectorMath.add(b, into: output + row * outFeatures, count: outFeatures) }
            }
        }
        guard let adapter else { return }
        let adapterInput = droppedInput(input, rows: rows, adapter: adapter, rowKeys: rowKeys, scratch: scratch)
        GEMM.multiply(m: rows, n: adapter.rank, k: inFeatures, a: adapterInput, lda: inFeatures,
                      b: adapter.a, ldb: inFeatures, transposeB: true, c: adapterHidden, ldc: adapter.rank)
        GEMM.multiply(m: rows, n: outFeatures, k: adapter.rank, alpha: adapter.scaling, a: adapterHidden, lda: adapter.rank,
                      b: adapter.b, ldb: adapter.rank, transposeB: true, beta: 1, c: output, ldc: outFeatures)
    }

    /// Accumulates the adapter's gradients and writes (or adds, when `accumulate`) ∂L/∂x into
    /// `inputGradient` when given.
    func backward(
        input: UnsafePointer<Float>, adapterHidden: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, rows: Int,
        inputGradient: UnsafeMutablePointer<Float>?, accumulate: Bool, adapter: LoRAFactors?,
        rowKeys: UnsafePointer<UInt64>, scratch: UnsafeMutablePointer<Float>
    ) {
        if let inputGradient {
            weight.data.withUnsafeBufferPointer { w in
                guard let w = w.baseAddress else { return }
                GEMM.multiply(m: rows, n: inFeatures, k: outFeatures, a: outputGradient, lda: outFeatures,
                              b: w, ldb: inFeatures, beta: accumulate ? 1 : 0, c: inputGradient, ldc: inFeatures)
            }
        }
        guard let adapter else { return }
        let rank = adapter.rank, s = adapter.scaling
        let projected = scratch + rows * inFeatures  // G·B, [rows x rank]
        GEMM.multiply(m: rows, n: rank, k: outFeatures, a: outputGradient, lda: outFeatures,
                      b: adapter.b, ldb: rank, c: projected, ldc: rank)
        if let gradientB = adapter.gradientB {
            GEMM.multiply(m: outFeatures, n: rank, k: rows, alpha: s, a: outputGradient, lda: outFeatures, transposeA: true,
                          b: adapterHidden, ldb: rank, beta: 1, c: gradientB, ldc: rank)
        }
        if let gradientA = adapter.gradientA {
            let adapterInput = droppedInput(input, rows: rows, adapter: adapter, rowKeys: rowKeys, scratch: scratch)
            GEMM.multiply(m: rank, n: inFeatures, k: rows, alpha: s, a: projected, lda: rank, transposeA: true,
                          b: adapterInput, ldb: inFeatures, beta: 1, c: gradientA, ldc: inFeatures)
        }
        guard let inputGradient else { return }
        if let dropout = adapter.dropout {
            // s·(G·B)·A into scratch, then through the same mask into ∂L/∂x.
            GEMM.multiply(m: rows, n: inFeatures, k: rank, alpha: s, a: projected, lda: rank,
                          b: adapter.a, ldb: inFeatures, c: scratch, ldc: inFeatures)
            dropout.apply(scratch, rows: rows, width: inFeatures, rowKeys: rowKeys, into: inputGradient, accumulate: true)
        } else {
            GEMM.multiply(m: rows, n: inFeatures, k: rank, alpha: s, a: projected, lda: rank,
                          b: adapter.a, ldb: inFeatures, beta: 1, c: inputGradient, ldc: inFeatures)
        }
    }

    /// drop(x): x itself without dropout, else the masked copy in `scratch`.
    private func droppedInput(
        _ input: UnsafePointer<Float>, rows: Int, adapter: LoRAFactors, rowKeys: UnsafePointer<UInt64>,
        scratch: UnsafeMutablePointer<Float>
    ) -> UnsafePointer<Float> {
        guard let dropout = adapter.dropout else { return input }
        dropout.apply(input, rows: rows, width: inFeatures, rowKeys: rowKeys, into: scratch, accumulate: false)
        return UnsafePointer(scratch)
    }
}
