import Testing
@testable import CondenseTensor

/// `GEMM.linear` must give every row the same bits whatever the batch around it: embeddings computed in
/// a coordinator's chunks must equal a local run's.
@Suite(.enabled(if: BLASRuntime.rowInvariantKernels, "the OpenBLAS kernels in use round rows by their place in the batch"))
struct GEMMRowInvarianceTests {
    /// (out, in) of the tiny test models' and SmolLM2-135M's projections, and a LoRA-rank-like width.
    static let shapes = [(64, 32), (32, 32), (32, 64), (128, 32), (960, 576), (576, 576), (3072, 576), (576, 1536), (8, 576)]

    @Test(arguments: shapes, [false, true])
    func rowsOfSmallAndLargeBatchesAreBitIdentical(shape: (outFeatures: Int, inFeatures: Int), accumulate: Bool) {
        let (n, k) = shape, total = 128
        let input = randomFloats(total * k, seed: 1), weight = randomFloats(n * k, in: -0.05...0.05, seed: 2)
        let start = randomFloats(total * n, seed: 3)
        let reference = linear(input, rows: total, weight: weight, n: n, k: k, start: start, accumulate: accumulate)
        for rows in [1, 2, 3, 5, 9, 10, 18, 19, 37, 38, 100] {
            for offset in [0, 1, 7, 27] {
                let rowInput = Array(input[(offset * k)..<((offset + rows) * k)])
                let rowStart = Array(start[(offset * n)..<((offset + rows) * n)])
                let result = linear(rowInput, rows: rows, weight: weight, n: n, k: k, start: rowStart, accumulate: accumulate)
                let expected = reference[(offset * n)..<((offset + rows) * n)]
                #expect(result.map(\.bitPattern) == expected.map(\.bitPattern), "\(rows) rows at row \(offset)")
            }
        }
    }

    @Test func paddingHonoursStridesAndLeavesOtherColumnsAlone() {
        // Two rows of a [2 x 40] output written at column 3 with stride 40, input rows 50 floats apart.
        let n = 32, k = 32, rows = 2
        let input = randomFloats(rows * 50, seed: 4), weight = randomFloats(n * k, seed: 5)
        var output = [Float](repeating: 7, count: rows * 40)
        input.withUnsafeBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                output.withUnsafeMutableBufferPointer { out in
                    GEMM.linear(x.baseAddress!, rows: rows, inputStride: 50, weight: w.baseAddress!, outFeatures: n,
                                inFeatures: k, into: out.baseAddress! + 3, outputStride: 40, accumulate: true)
                }
            }
        }
        for row in 0..<rows {
            for column in 0..<40 {
                let value = output[row * 40 + column]
                guard (3..<(3 + n)).contains(column) else {
                    #expect(value == 7)
                    continue
                }
                var expected: Double = 7
                for p in 0..<k { expected += Double(input[row * 50 + p]) * Double(weight[(column - 3) * k + p]) }
                #expect(abs(Double(value) - expected) < 1e-4)
            }
        }
    }

    private func linear(
        _ input: [Float], rows: Int, weight: [Float], n: Int, k: Int, start: [Float], accumulate: Bool
    ) -> [Float] {
        var output = accumulate ? start : [Float](repeating: .nan, count: rows * n)
        input.withUnsafeBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                output.withUnsafeMutableBufferPointer { out in
                    GEMM.linear(x.baseAddress!, rows: rows, weight: w.baseAddress!, outFeatures: n, inFeatures: k,
                                into: out.baseAddress!, accumulate: accumulate)
                }
            }
        }
        return output
    }
}
