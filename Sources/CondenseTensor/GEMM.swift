import COpenBLAS

/// Thin wrappers over OpenBLAS `cblas_sgemm` (row-major).
public enum GEMM {
    /// C = alpha · op(A) · op(B) + beta · C, all row-major with explicit leading dimensions (row strides).
    /// op(A) is [m x k], op(B) is [k x n], C is [m x n].
    @inlinable
    public static func multiply(
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
        b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// C[m x n] = A[m x k] · W[n x k]ᵀ (+ C when `accumulate`): a linear layer over row vectors with
    /// weights in [out][in] layout. Strides default to dense rows.
    @inlinable
    public static func linear(
        _ input: UnsafePointer<Float>, rows m: Int, inputStride: Int? = nil,
        weight: UnsafePointer<Float>, outFeatures n: Int, inFeatures k: Int,
        into output: UnsafeMutablePointer<Float>, outputStride: Int? = nil, accumulate: Bool = false
    ) {
        multiply(
            m: m, n: n, k: k, a: input, lda: inputStride ?? k, b: weight, ldb: k, transposeB: true,
            beta: accumulate ? 1 : 0, c: output, ldc: outputStride ?? n)
    }
}

extension Matrix {
    /// self · otherᵀ: [rows x other.rows]; `other` in [out][in] layout like a linear layer's weight.
    public func multipliedTransposed(_ other: Matrix) -> Matrix {
        precondition(cols == other.cols, "inner dimensions differ: \(rows)x\(cols) · (\(other.rows)x\(other.cols))ᵀ")
        return product(other, transposeSelf: false, transposeOther: true)
    }

    /// self · other: [rows x other.cols].
    public func multiplied(_ other: Matrix) -> Matrix {
        precondition(cols == other.rows, "inner dimensions differ: \(rows)x\(cols) · \(other.rows)x\(other.cols)")
        return product(other, transposeSelf: false, transposeOther: false)
    }

    /// selfᵀ · other: [cols x other.cols] (e.g. a weight gradient from activations and output gradients).
    public func transposedMultiplied(_ other: Matrix) -> Matrix {
        precondition(rows == other.rows, "inner dimensions differ: (\(rows)x\(cols))ᵀ · \(other.rows)x\(other.cols)")
        return product(other, transposeSelf: true, transposeOther: false)
    }

    private func product(_ other: Matrix, transposeSelf: Bool, transposeOther: Bool) -> Matrix {
        let m = transposeSelf ? cols : rows
        let k = transposeSelf ? rows : cols
        let n = transposeOther ? other.rows : other.cols
        var result = Matrix(zeros: m, n)
        guard k > 0 else { return result }
        data.withUnsafeBufferPointer { a in
            other.data.withUnsafeBufferPointer { b in
                result.data.withUnsafeMutableBufferPointer { c in
                    guard let a = a.baseAddress, let b = b.baseAddress, let c = c.baseAddress else { return }
                    GEMM.multiply(
                        m: m, n: n, k: k, a: a, lda: cols, transposeA: transposeSelf,
                        b: b, ldb: other.cols, transposeB: transposeOther, c: c, ldc: n)
                }
            }
        }
        return result
    }
}
