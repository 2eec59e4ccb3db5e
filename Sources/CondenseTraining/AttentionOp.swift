import CondenseTensor

/// Causal grouped-query attention over packed sequences (query head h reads KV head h / (heads/kvHeads)),
/// per (sequence, head) as BLAS products:
///   S = scale·Q·Kᵀ, P = softmax over j ≤ i (0 above the diagonal), O = P·V.
/// Backward, with G = ∂L/∂O:
///   ∂V += Pᵀ·G,  ∂P = G·Vᵀ,  ∂S = P ⊙ (∂P − rowsum(P ⊙ ∂P)),  ∂Q = scale·∂S·K,  ∂K += scale·∂Sᵀ·Q
/// (∂K, ∂V summed over the query heads sharing a KV head).
struct AttentionOp: Sendable {
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    let scale: Float

    var queryWidth: Int { heads * headDim }
    var keyValueWidth: Int { kvHeads * headDim }

    /// Start of each sequence's [heads x L x L] probability blocks when all are kept (`count + 1` entries).
    func probabilityOffsets(_ offsets: [Int]) -> [Int] {
        var result = [0]
        for sequence in 0..<(offsets.count - 1) {
            let length = offsets[sequence + 1] - offsets[sequence]
            result.append(result[sequence] + heads * length * length)
        }
        return result
    }

    /// - Parameters:
    ///   - queries: [T x heads·headDim]; keys, values: [T x kvHeads·headDim] (dense rows).
    ///   - output: [T x heads·headDim].
    ///   - probabilities: all blocks at `probabilityOffsets` when `keep`, else one reused [L x L] block.
    func forward(
        queries: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, offsets: [Int],
        output: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>, keep: Bool
    ) {
        let blocks = keep ? probabilityOffsets(offsets) : []
        let group = heads / kvHeads
        for sequence in 0..<(offsets.count - 1) {
            let start = offsets[sequence], length = offsets[sequence + 1] - start
            guard length > 0 else { continue }
            for head in 0..<heads {
                let kvHead = head / group
                let p = probabilities + (keep ? blocks[sequence] + head * length * length : 0)
                let q = queries + start * queryWidth + head * headDim
                let k = keys + start * keyValueWidth + kvHead * headDim
                let v = values + start * keyValueWidth + kvHead * headDim
                GEMM.multiply(m: length, n: length, k: headDim, alpha: scale, a: q, lda: queryWidth,
                              b: k, ldb: keyValueWidth, transposeB: true, c: p, ldc: length)
                for i in 0..<length {
                    let row = p + i * length
                    VectorMath.softmax(row, count: i + 1)
                    (row + i + 1).update(repeating: 0, count: length - i - 1)
                }
                GEMM.multiply(m: length, n: headDim, k: length, a: p, lda: length, b: v, ldb: keyValueWidth,
                              c: output + start * queryWidth + head * headDim, ldc: queryWidth)
            }
        }
    }

    /// Writes ∂L/∂Q, ∂L/∂K, ∂L/∂V from the saved Q, K, V, probabilities and ∂L/∂O.
    /// `scratch` holds one [L x L] block of the longest sequence.
    func backward(
        queries: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, offsets: [Int],
        probabilities: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
        queryGradient: UnsafeMutablePointer<Float>, keyGradient: UnsafeMutablePointer<Float>,
        valueGradient: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        let blocks = probabilityOffsets(offsets)
        let group = heads / kvHeads
        let tokens = offsets[offsets.count - 1]
        keyGradient.update(repeating: 0, count: tokens * keyValueWidth)
        valueGradient.update(repeating: 0, count: tokens * keyValueWidth)
        for sequence in 0..<(offsets.count - 1) {
            let start = offsets[sequence], length = offsets[sequence + 1] - start
            guard length > 0 else { continue }
            for head in 0..<heads {
                let kvHead = head / group
                let p = probabilities + blocks[sequence] + head * length * length
                let q = queries + start * queryWidth + head * headDim
                let k = keys + start * keyValueWidth + kvHead * headDim
                let v = values + start * keyValueWidth + kvHead * headDim
                let g = outputGradient + start * queryWidth + head * headDim
                let dk = keyGradient + start * keyValueWidth + kvHead * headDim
                let dv = valueGradient + start * keyValueWidth + kvHead * headDim
                GEMM.multiply(m: length, n: headDim, k: length, a: p, lda: length, transposeA: true,
                              b: g, ldb: queryWidth, beta: 1, c: dv, ldc: keyValueWidth)
                let dS = scratch
                GEMM.multiply(m: length, n: length, k: headDim, a: g, lda: queryWidth,
                              b: v, ldb: keyValueWidth, transposeB: true, c: dS, ldc: length)
                for i in 0..<length {
                    let pRow = p + i * length, row = dS + i * length
                    let visible = i + 1
                    let centre = VectorMath.dot(pRow, row, count: visible)
                    for j in 0..<visible { row[j] = scale * pRow[j] * (row[j] - centre) }
                    (row + visible).update(repeating: 0, count: length - visible)
                }
                GEMM.multiply(m: length, n: headDim, k: length, a: dS, lda: length, b: k, ldb: keyValueWidth,
                              c: queryGradient + start * queryWidth + head * headDim, ldc: queryWidth)
                GEMM.multiply(m: length, n: headDim, k: length, a: dS, lda: length, transposeA: true,
                              b: q, ldb: queryWidth, beta: 1, c: dk, ldc: keyValueWidth)
            }
        }
    }
}
