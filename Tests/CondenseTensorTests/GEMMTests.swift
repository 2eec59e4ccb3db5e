import Testing
@testable import CondenseTensor

@Suite struct GEMMTests {
    private func naiveProduct(_ a: Matrix, _ b: Matrix, transposeA: Bool, transposeB: Bool) -> [Double] {
        let m = transposeA ? a.cols : a.rows, k = transposeA ? a.rows : a.cols
        let n = transposeB ? b.rows : b.cols
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k {
                    let x = transposeA ? a.data[p * a.cols + i] : a.data[i * a.cols + p]
                    let y = transposeB ? b.data[j * b.cols + p] : b.data[p * b.cols + j]
                    sum += Double(x) * Double(y)
                }
                c[i * n + j] = sum
            }
        }
        return c
    }

    private func random(_ rows: Int, _ cols: Int, seed: UInt64) -> Matrix {
        Matrix(rows: rows, cols: cols, data: randomFloats(rows * cols, seed: seed))
    }

    @Test func multipliedTransposedMatchesNaive() {
        let a = random(37, 70, seed: 1), w = random(45, 70, seed: 2)
        let c = a.multipliedTransposed(w)
        #expect(c.rows == 37 && c.cols == 45)
        #expect(maxAbsDifference(c.data, naiveProduct(a, w, transposeA: false, transposeB: true)) < 1e-4)
    }

    @Test func multipliedMatchesNaive() {
        let a = random(19, 33, seed: 3), b = random(33, 21, seed: 4)
        let c = a.multiplied(b)
        #expect(c.rows == 19 && c.cols == 21)
        #expect(maxAbsDifference(c.data, naiveProduct(a, b, transposeA: false, transposeB: false)) < 1e-4)
    }

    @Test func transposedMultipliedMatchesNaive() {
        let a = random(40, 12, seed: 5), b = random(40, 9, seed: 6)
        let c = a.transposedMultiplied(b)
        #expect(c.rows == 12 && c.cols == 9)
        #expect(maxAbsDifference(c.data, naiveProduct(a, b, transposeA: true, transposeB: false)) < 1e-4)
    }

    @Test func emptyInnerDimensionGivesZeros() {
        let a = Matrix(zeros: 3, 0), b = Matrix(zeros: 4, 0)
        #expect(a.multipliedTransposed(b) == Matrix(zeros: 3, 4))
    }

    /// A linear layer writing into a column slice of a wider matrix, then accumulating a second product.
    @Test func stridedLinearWritesOnlyItsSliceAndAccumulates() {
        let rows = 5, inFeatures = 24, outFeatures = 7, outputStride = 20, column = 6
        let x = random(rows, inFeatures, seed: 7), w = random(outFeatures, inFeatures, seed: 8)
        var output = [Float](repeating: -9, count: rows * outputStride)
        let expected = naiveProduct(x, w, transposeA: false, transposeB: true)
        x.data.withUnsafeBufferPointer { xs in
            w.data.withUnsafeBufferPointer { ws in
                output.withUnsafeMutableBufferPointer { out in
                    for accumulate in [false, true] {
                        GEMM.linear(
                            xs.baseAddress!, rows: rows, weight: ws.baseAddress!, outFeatures: outFeatures,
                            inFeatures: inFeatures, into: out.baseAddress! + column, outputStride: outputStride,
                            accumulate: accumulate)
                    }
                }
            }
        }
        for r in 0..<rows {
            for c in 0..<outputStride {
                let value = Double(output[r * outputStride + c])
                if (column..<(column + outFeatures)).contains(c) {
                    #expect(abs(value - 2 * expected[r * outFeatures + c - column]) < 1e-4)
                } else {
                    #expect(value == -9)
                }
            }
        }
    }
}
