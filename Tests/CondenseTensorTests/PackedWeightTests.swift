import Dispatch
import Testing
@testable import CondenseTensor

/// The inference engine's products (`PackedWeight`): the documented summation order on every instruction
/// set, rows independent of their batch, OpenBLAS's floats where its kernels sum the same way.
@Suite struct PackedWeightTests {
    /// The documented order, spelled out: per output, a fused multiply-add chain over each block of k (blocks
    /// of 320 while ≥ 640 remain, then two halves, the first rounded up), block sums added to the start value.
    static func reference(
        _ x: [Float], rows: Int, inputStride: Int, weight: [Float], outFeatures n: Int, inFeatures k: Int,
        start: [Float], outputStride: Int, accumulate: Bool
    ) -> [Float] {
        var blocks: [Range<Int>] = [], begin = 0
        while begin < k {
            let remaining = k - begin
            let length = remaining >= 640 ? 320 : remaining > 320 ? (remaining + 1) / 2 : remaining
            blocks.append(begin..<(begin + length))
            begin += length
        }
        var y = start
        for row in 0..<rows {
            for output in 0..<n {
                var sum: Float = accumulate ? y[row * outputStride + output] : 0
                for block in blocks {
                    var partial: Float = 0
                    for index in block {
                        partial = partial.addingProduct(x[row * inputStride + index], weight[output * k + index])
                    }
                    sum = sum + partial
                }
                y[row * outputStride + output] = sum
            }
        }
        return y
    }

    /// `apply` with the given kernels (nil: the default, multi-threaded entry point).
    static func product(
        _ packed: PackedWeight, kernels: PackedWeight.InstructionSet?, _ x: [Float], rows: Int, inputStride: Int,
        start: [Float], outputStride: Int, accumulate: Bool
    ) -> [Float] {
        var y = start
        x.withUnsafeBufferPointer { input in
            y.withUnsafeMutableBufferPointer { output in
                guard let input = input.baseAddress, let output = output.baseAddress else { return }
                if let kernels {
                    packed.apply(kernels: kernels, input, rows: rows, inputStride: inputStride, into: output,
                                 outputStride: outputStride, accumulate: accumulate)
                } else {
                    packed.apply(input, rows: rows, inputStride: inputStride, into: output, outputStride: outputStride,
                                 accumulate: accumulate)
                }
            }
        }
        return y
    }

    static var instructionSets: [PackedWeight.InstructionSet] {
        PackedWeight.InstructionSet.allCases.filter { $0 <= PackedWeight.bestInstructionSet }
    }

    /// (rows, out, in): partial panels (45, 70), one k, k blocks of every kind (333 → two halves, 1000 →
    /// 320 + 340 → 320 + 170 + 170), and more rows than one row block (192).
    static let shapes = [(1, 45, 7), (5, 70, 333), (13, 32, 1), (30, 96, 641), (3, 64, 1000), (200, 33, 40)]

    @Test(arguments: shapes, [false, true])
    func everyInstructionSetSumsInTheDocumentedOrder(shape: (rows: Int, n: Int, k: Int), accumulate: Bool) {
        let (rows, n, k) = shape, inputStride = k + 3, outputStride = n + 5
        let x = randomFloats(rows * inputStride, seed: 11), weight = randomFloats(n * k, in: -0.1...0.1, seed: 12)
        let start = randomFloats(rows * outputStride, seed: 13)
        let packed = PackedWeight(Matrix(rows: n, cols: k, data: weight))
        let expected = Self.reference(x, rows: rows, inputStride: inputStride, weight: weight, outFeatures: n,
                                      inFeatures: k, start: start, outputStride: outputStride, accumulate: accumulate)
        for kernels in [nil] + Self.instructionSets.map(Optional.some) {
            let result = Self.product(packed, kernels: kernels, x, rows: rows, inputStride: inputStride, start: start,
                                      outputStride: outputStride, accumulate: accumulate)
            // Columns past `n` in each output row (the stride's gap) must be left alone.
            #expect(result.map(\.bitPattern) == expected.map(\.bitPattern), "kernels \(kernels?.description ?? "default")")
        }
    }

    /// A row's output is the same alone, at any offset, and in batches of any size (the embedding contract).
    @Test(arguments: [(960, 576), (576, 1536), (45, 70)])
    func rowsDoNotDependOnTheirBatch(shape: (n: Int, k: Int)) {
        let (n, k) = shape, total = 64
        let x = randomFloats(total * k, seed: 21), weight = randomFloats(n * k, in: -0.05...0.05, seed: 22)
        let packed = PackedWeight(Matrix(rows: n, cols: k, data: weight))
        let all = Self.product(packed, kernels: nil, x, rows: total, inputStride: k,
                               start: [Float](repeating: 0, count: total * n), outputStride: n, accumulate: false)
        for (rows, offset) in [(1, 0), (1, 37), (2, 5), (11, 13), (17, 40)] {
            let part = Array(x[(offset * k)..<((offset + rows) * k)])
            let result = Self.product(packed, kernels: nil, part, rows: rows, inputStride: k,
                                      start: [Float](repeating: 0, count: rows * n), outputStride: n, accumulate: false)
            #expect(result.map(\.bitPattern) == all[(offset * n)..<((offset + rows) * n)].map(\.bitPattern),
                    "\(rows) rows at row \(offset)")
        }
    }

    /// Stacked parts are the rows of one matrix; an empty input width gives zeros (or leaves y).
    @Test func stackingAndEmptySums() {
        let a = Matrix(rows: 20, cols: 9, data: randomFloats(180, seed: 31))
        let b = Matrix(rows: 17, cols: 9, data: randomFloats(153, seed: 32))
        let stacked = PackedWeight(stacking: [a, b])
        let single = PackedWeight(Matrix(rows: 37, cols: 9, data: a.data + b.data))
        #expect(stacked.outFeatures == 37 && stacked.inFeatures == 9)
        let x = randomFloats(4 * 9, seed: 33), zeros = [Float](repeating: 0, count: 4 * 37)
        #expect(Self.product(stacked, kernels: nil, x, rows: 4, inputStride: 9, start: zeros, outputStride: 37, accumulate: false)
            == Self.product(single, kernels: nil, x, rows: 4, inputStride: 9, start: zeros, outputStride: 37, accumulate: false))

        let empty = PackedWeight(Matrix(rows: 5, cols: 0, data: []))
        let start = [Float](repeating: 3, count: 2 * 5)
        #expect(Self.product(empty, kernels: nil, [], rows: 2, inputStride: 0, start: start, outputStride: 5, accumulate: false)
            == [Float](repeating: 0, count: 10))
        #expect(Self.product(empty, kernels: nil, [], rows: 2, inputStride: 0, start: start, outputStride: 5, accumulate: true) == start)
    }

    /// Split over threads or not, the same floats.
    @Test func threadCountDoesNotChangeResults() {
        let n = 3072, k = 576, rows = 40
        let x = randomFloats(rows * k, seed: 41), weight = randomFloats(n * k, in: -0.05...0.05, seed: 42)
        let packed = PackedWeight(Matrix(rows: n, cols: k, data: weight))
        let zeros = [Float](repeating: 0, count: rows * n)
        let saved = PackedWeight.threads
        defer { PackedWeight.setThreads(saved) }
        var results: [[UInt32]] = []
        for threads in [1, 2, 3] {
            PackedWeight.setThreads(threads)
            results.append(Self.product(packed, kernels: nil, x, rows: rows, inputStride: k, start: zeros,
                                        outputStride: n, accumulate: false).map(\.bitPattern))
        }
        #expect(results[0] == results[1] && results[1] == results[2])
    }

    /// Products from several threads at once (concurrent forward passes) share the worker pool: a caller
    /// that finds it busy runs its product alone; every result is still the serial one.
    @Test func concurrentCallersGetTheSerialResults() {
        let n = 960, k = 576, rows = 24, callers = 6
        let weight = randomFloats(n * k, in: -0.05...0.05, seed: 61)
        let packed = PackedWeight(Matrix(rows: n, cols: k, data: weight))
        let inputs = (0..<callers).map { randomFloats(rows * k, seed: 62 + UInt64($0)) }
        let zeros = [Float](repeating: 0, count: rows * n)
        let expected = inputs.map {
            Self.product(packed, kernels: PackedWeight.instructionSet, $0, rows: rows, inputStride: k, start: zeros,
                         outputStride: n, accumulate: false).map(\.bitPattern)
        }
        let results = UnsafeMutableBufferPointer<[UInt32]>.allocate(capacity: callers)
        results.initialize(repeating: [])
        defer { results.deallocate() }
        nonisolated(unsafe) let slots = results
        DispatchQueue.concurrentPerform(iterations: callers) { caller in
            var outcome: [UInt32] = []
            for _ in 0..<20 {
                outcome = Self.product(packed, kernels: nil, inputs[caller], rows: rows, inputStride: k, start: zeros,
                                       outputStride: n, accumulate: false).map(\.bitPattern)
            }
            slots[caller] = outcome
        }
        for caller in 0..<callers { #expect(results[caller] == expected[caller], "caller \(caller)") }
    }

    /// OpenBLAS's SkylakeX/Cooperlake sgemm sums in the same order: the same floats as `GEMM.linear`.
    @Test(.enabled(if: BLASRuntime.rowInvariantKernels, "other OpenBLAS kernels sum in another order"),
          arguments: [(17, 960, 576), (64, 576, 1536), (3, 3072, 576), (300, 576, 576), (9, 100, 1000)])
    func matchesOpenBLASBitForBit(shape: (rows: Int, n: Int, k: Int)) {
        let (rows, n, k) = shape
        let x = randomFloats(rows * k, seed: 51), weight = randomFloats(n * k, in: -0.05...0.05, seed: 52)
        let start = randomFloats(rows * n, seed: 53)
        let packed = PackedWeight(Matrix(rows: n, cols: k, data: weight))
        for accumulate in [false, true] {
            var sgemm = start
            x.withUnsafeBufferPointer { input in
                weight.withUnsafeBufferPointer { w in
                    sgemm.withUnsafeMutableBufferPointer { out in
                        GEMM.linear(input.baseAddress!, rows: rows, weight: w.baseAddress!, outFeatures: n, inFeatures: k,
                                    into: out.baseAddress!, accumulate: accumulate)
                    }
                }
            }
            let ours = Self.product(packed, kernels: nil, x, rows: rows, inputStride: k, start: start, outputStride: n,
                                    accumulate: accumulate)
            #expect(ours.map(\.bitPattern) == sgemm.map(\.bitPattern), "accumulate \(accumulate)")
        }
    }
}
