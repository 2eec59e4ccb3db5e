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
    ///
    /// Row-invariant with AVX-512 kernels (`BLASRuntime.rowInvariantKernels`): each output row is the same,
    /// bit for bit, whatever the other rows and their number, and the same floats as `PackedWeight.apply`
    /// (the inference engine's products). Products too small for OpenBLAS's regular kernels run padded with
    /// zero rows (see `rowInvariantMinimumRows`).
    @inlinable
    public static func linear(
        _ input: UnsafePointer<Float>, rows m: Int, inputStride: Int? = nil,
        weight: UnsafePointer<Float>, outFeatures n: Int, inFeatures k: Int,
        into output: UnsafeMutablePointer<Float>, outputStride: Int? = nil, accumulate: Bool = false
    ) {
        let inputStride = inputStride ?? k, outputStride = outputStride ?? n
        let minimumRows = rowInvariantMinimumRows(outFeatures: n, inFeatures: k)
        guard m >= minimumRows || m == 0 else {
            paddedLinear(input, rows: m, paddedRows: minimumRows, inputStride: inputStride, weight: weight,
                         outFeatures: n, inFeatures: k, into: output, outputStride: outputStride, accumulate: accumulate)
            return
        }
        multiply(
            m: m, n: n, k: k, a: input, lda: inputStride, b: weight, ldb: k, transposeB: true,
            beta: accumulate ? 1 : 0, c: output, ldc: outputStride)
    }

    /// Fewest rows for which `linear` runs OpenBLAS's regular kernels. OpenBLAS 0.3.21 sends products with
    /// m·n ≤ 1200 and m·n·k ≤ 10⁶ to its SkylakeX/Cooperlake small-matrix kernels, which round differently
    /// (a 1-token text alone in SmolLM2-135M's 576-wide projections, a short batch of a tiny model); and
    /// OpenBLAS 0.3.28+ can forward one-row products to GEMV: hence at least 2 rows.
    @usableFromInline
    static func rowInvariantMinimumRows(outFeatures n: Int, inFeatures k: Int) -> Int {
        guard n > 0, k > 0 else { return 1 }
        let smallMatrixMaxOutput = 1200, smallMatrixMaxWork = 1_000_000
        return max(2, min(smallMatrixMaxOutput / n + 1, smallMatrixMaxWork / (n * k) + 1))
    }

    /// `linear` over a copy of the `m` rows followed by zero rows up to `paddedRows`; only the `m` rows
    /// are written back. Cheap: `paddedRows` is 2 or 3 for real models' widths.
    @usableFromInline
    static func paddedLinear(
        _ input: UnsafePointer<Float>, rows m: Int, paddedRows: Int, inputStride: Int,
        weight: UnsafePointer<Float>, outFeatures n: Int, inFeatures k: Int,
        into output: UnsafeMutablePointer<Float>, outputStride: Int, accumulate: Bool
    ) {
        let paddedInput = UnsafeMutablePointer<Float>.allocate(capacity: paddedRows * k)
        let paddedOutput = UnsafeMutablePointer<Float>.allocate(capacity: paddedRows * n)
        defer {
            paddedInput.deallocate()
            paddedOutput.deallocate()
        }
        paddedInput.initialize(repeating: 0, count: paddedRows * k)
        paddedOutput.initialize(repeating: 0, count: paddedRows * n)
        for row in 0..<m {
            (paddedInput + row * k).update(from: input + row * inputStride, count: k)
            if accumulate { (paddedOutput + row * n).update(from: output + row * outputStride, count: n) }
        }
        multiply(
            m: paddedRows, n: n, k: k, a: paddedInput, lda: k, b: weight, ldb: k, transposeB: true,
            beta: accumulate ? 1 : 0, c: paddedOutput, ldc: n)
        for row in 0..<m {
            (output + row * outputStride).update(from: paddedOutput + row * n, count: n)
        }
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
