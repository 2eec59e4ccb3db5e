import Foundation
import Testing
@testable import CondenseTensor

/// Each kernel against a scalar Double reference, over lengths that cover SIMD bodies and tails.
@Suite struct VectorMathTests {
    @Test(arguments: kernelLengths) func dotAndNorms(count: Int) {
        let a = randomFloats(count, seed: 10), b = randomFloats(count, seed: 11)
        let expectedDot = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let expectedNorm = a.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                #expect(abs(Double(VectorMath.dot(a.baseAddress!, b.baseAddress!, count: count)) - expectedDot) < 1e-4)
                #expect(abs(Double(VectorMath.l2Norm(a.baseAddress!, count: count)) - expectedNorm) < 1e-4)
            }
        }
    }

    @Test(arguments: kernelLengths) func maximumFindsLargest(count: Int) {
        var x = randomFloats(count, seed: 12)
        x[count / 2] = 5  // the largest element in the middle, after the first vector when count > 16
        #expect(x.withUnsafeBufferPointer { VectorMath.maximum($0.baseAddress!, count: count) } == 5)
        x[count - 1] = 6  // and in the tail
        #expect(x.withUnsafeBufferPointer { VectorMath.maximum($0.baseAddress!, count: count) } == 6)
    }

    @Test(arguments: kernelLengths) func scaleAddAddScaled(count: Int) {
        let x = randomFloats(count, seed: 13), y = randomFloats(count, seed: 14)
        var scaled = x, summed = x, axpy = x
        scaled.withUnsafeMutableBufferPointer { VectorMath.scale($0.baseAddress!, by: 0.5, count: count) }
        y.withUnsafeBufferPointer { y in
            summed.withUnsafeMutableBufferPointer { VectorMath.add(y.baseAddress!, into: $0.baseAddress!, count: count) }
            axpy.withUnsafeMutableBufferPointer {
                VectorMath.addScaled(y.baseAddress!, by: -3, into: $0.baseAddress!, count: count)
            }
        }
        #expect(maxAbsDifference(scaled, x.map { Double($0) * 0.5 }) < 1e-7)
        #expect(maxAbsDifference(summed, zip(x, y).map { Double($0) + Double($1) }) < 1e-6)
        #expect(maxAbsDifference(axpy, zip(x, y).map { Double($0) - 3 * Double($1) }) < 1e-5)
    }

    @Test(arguments: kernelLengths) func rmsNormMatchesDefinition(count: Int) {
        let x = randomFloats(count, in: -4...4, seed: 15), weight = randomFloats(count, in: 0.5...1.5, seed: 16)
        let epsilon: Float = 1e-5
        let meanSquare = x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(count)
        let expected = zip(x, weight).map { Double($0) / (meanSquare + Double(epsilon)).squareRoot() * Double($1) }
        var out = [Float](repeating: 0, count: count)
        var inPlace = x
        x.withUnsafeBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                out.withUnsafeMutableBufferPointer {
                    VectorMath.rmsNorm(x.baseAddress!, weight: w.baseAddress!, epsilon: epsilon, count: count, into: $0.baseAddress!)
                }
            }
        }
        weight.withUnsafeBufferPointer { w in
            inPlace.withUnsafeMutableBufferPointer {
                VectorMath.rmsNorm($0.baseAddress!, weight: w.baseAddress!, epsilon: epsilon, count: count, into: $0.baseAddress!)
            }
        }
        #expect(maxAbsDifference(out, expected) < 2e-5)
        #expect(inPlace == out)
    }

    @Test(arguments: kernelLengths) func siluMultiplyMatchesDefinition(count: Int) {
        let gate = randomFloats(count, in: -12...12, seed: 17), up = randomFloats(count, in: -2...2, seed: 18)
        let expected = zip(gate, up).map { g, u in Double(g) / (1 + Foundation.exp(-Double(g))) * Double(u) }
        var out = [Float](repeating: 0, count: count)
        gate.withUnsafeBufferPointer { g in
            up.withUnsafeBufferPointer { u in
                out.withUnsafeMutableBufferPointer {
                    VectorMath.siluMultiply(gate: g.baseAddress!, up: u.baseAddress!, count: count, into: $0.baseAddress!)
                }
            }
        }
        // Relative to the output scale (|g·u| ≤ 24): the float rounding of a few operations.
        #expect(maxAbsDifference(out, expected) < 2e-5)
    }

    @Test(arguments: kernelLengths) func softmaxMatchesDefinition(count: Int) {
        let x = randomFloats(count, in: -20...20, seed: 19)
        let peak = Double(x.max()!)
        let exps = x.map { Foundation.exp(Double($0) - peak) }
        let total = exps.reduce(0, +)
        var out = x
        out.withUnsafeMutableBufferPointer { VectorMath.softmax($0.baseAddress!, count: count) }
        #expect(maxAbsDifference(out, exps.map { $0 / total }) < 1e-6)
        #expect(abs(out.reduce(0, +) - 1) < 1e-5)
    }

    @Test func softmaxTreatsMinusInfinityAsZeroWeight() {
        var x: [Float] = [0, -.infinity, 0, -.infinity] + [Float](repeating: -.infinity, count: 14)
        x.withUnsafeMutableBufferPointer { VectorMath.softmax($0.baseAddress!, count: $0.count) }
        #expect(x[0] == 0.5 && x[2] == 0.5)
        #expect(x.enumerated().allSatisfy { $0.offset == 0 || $0.offset == 2 || $0.element == 0 })
    }

    @Test func expIsAccurateAcrossTheRangeAndSafeAtTheEnds() {
        var maxRelativeError = 0.0
        var x: Float = -87
        while x + 15 * 0.0137 < 88 {  // stay below the e^88 cap
            let lanes = VectorMath.Vector((0..<16).map { x + Float($0) * 0.0137 })
            let result = VectorMath.exp(lanes)
            for lane in 0..<16 {
                let exact = Foundation.exp(Double(lanes[lane]))
                maxRelativeError = max(maxRelativeError, abs(Double(result[lane]) - exact) / exact)
            }
            x += 0.173
        }
        #expect(maxRelativeError < 5e-7)  // a few float ulps
        let ends = VectorMath.exp(VectorMath.Vector([-.infinity, -1000, -88, 1000, .infinity, 0] + [Float](repeating: 0, count: 10)))
        #expect(ends[0] == 0 && ends[1] == 0 && ends[2] == 0)
        #expect(ends[3].isFinite && ends[3] > 1e38 && ends[4].isFinite)
        #expect(ends[5] == 1)
    }

    @Test(arguments: [2, 8, 32, 64, 80, 128]) func rotateHalfMatchesDefinition(headDim: Int) {
        let half = headDim / 2
        let x = randomFloats(headDim, seed: 20)
        let angles = randomFloats(half, in: -3...3, seed: 21)
        let cosines = angles.map { Float(Foundation.cos(Double($0))) }, sines = angles.map { Float(Foundation.sin(Double($0))) }
        var expected = [Double](repeating: 0, count: headDim)
        for i in 0..<half {
            let a = Double(x[i]), b = Double(x[i + half]), c = Double(cosines[i]), s = Double(sines[i])
            expected[i] = a * c - b * s
            expected[i + half] = b * c + a * s
        }
        var rotated = x
        cosines.withUnsafeBufferPointer { c in
            sines.withUnsafeBufferPointer { s in
                rotated.withUnsafeMutableBufferPointer {
                    VectorMath.rotateHalf($0.baseAddress!, half: half, cos: c.baseAddress!, sin: s.baseAddress!)
                }
            }
        }
        #expect(maxAbsDifference(rotated, expected) < 1e-6)
    }

    @Test func rotaryTableHoldsCosSinOfPositionTimesFrequency() {
        let frequencies = [1.0, 0.1, 1e-4]
        let table = RotaryTable(inverseFrequencies: frequencies, positions: 5000)
        #expect(table.half == 3 && table.cos.count == 15000 && table.sin.count == 15000)
        for position in [0, 1, 17, 4999] {
            for (i, frequency) in frequencies.enumerated() {
                let angle = Double(position) * frequency
                #expect(table.cos[position * 3 + i] == Float(Foundation.cos(angle)))
                #expect(table.sin[position * 3 + i] == Float(Foundation.sin(angle)))
            }
        }
    }
}
