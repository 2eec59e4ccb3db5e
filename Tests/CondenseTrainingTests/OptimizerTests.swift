import Foundation
import Testing
@testable import CondenseTraining

@Suite struct OptimizerTests {
    @Test func adamWStepMatchesAHandComputedUpdate() throws {
        var optimizer = AdamW(parameterCount: 2, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1)
        var parameters: [Float] = [1.0, -2.0]
        try optimizer.update(&parameters, gradients: [0.5, -0.25], learningRate: 0.01)
        // Step 1: m = 0.1g, v = 0.001g², m̂ = g, v̂ = g², so p ← p(1 − lr·λ) − lr·g/(|g| + ε).
        #expect(abs(parameters[0] - (1.0 * (1 - 0.001) - 0.01)) < 1e-6)
        #expect(abs(parameters[1] - (-2.0 * (1 - 0.001) + 0.01)) < 1e-6)
        try optimizer.update(&parameters, gradients: [0.1, 0.0], learningRate: 0.01)
        // Step 2 by hand for the first parameter.
        let m = 0.9 * 0.05 + 0.1 * 0.1, v = 0.999 * 0.00025 + 0.001 * 0.01
        let mHat = m / (1 - 0.81), vHat = v / (1 - 0.999 * 0.999)
        let expected = 0.989 * (1 - 0.001) - 0.01 * mHat / (vHat.squareRoot() + 1e-8)
        #expect(abs(Double(parameters[0]) - expected) < 1e-6)
        #expect(optimizer.steps == 2)
        #expect(throws: TrainingError.self) { try optimizer.update(&parameters, gradients: [1], learningRate: 0.01) }
        #expect(optimizer.steps == 2)
    }

    @Test func scheduleWarmsUpThenDecaysLinearly() {
        let schedule = LearningRateSchedule(baseRate: 1e-3, warmupSteps: 10, totalSteps: 110)
        #expect(schedule.rate(atStep: 0) == 0)
        #expect(abs(schedule.rate(atStep: 5) - 5e-4) < 1e-9)
        #expect(abs(schedule.rate(atStep: 10) - 1e-3) < 1e-9)
        #expect(abs(schedule.rate(atStep: 60) - 5e-4) < 1e-9)
        #expect(schedule.rate(atStep: 110) == 0)
        #expect(schedule.rate(atStep: 200) == 0)
    }

    @Test func clippingScalesToTheMaximumGlobalNorm() {
        var gradients: [Float] = [3, 4]
        let norm = GradientClipping.clip(&gradients, maxNorm: 1)
        #expect(norm == 5)
        #expect(abs(gradients[0] - 0.6) < 1e-6 && abs(gradients[1] - 0.8) < 1e-6)
        var small: [Float] = [0.3, 0.4]
        #expect(GradientClipping.clip(&small, maxNorm: 1) == 0.5)
        #expect(small == [0.3, 0.4])
    }

    @Test func dropoutMaskIsAFunctionOfItsKeys() {
        let mask = DropoutMask(probability: 0.25, stream: 7)
        let x = [Float](repeating: 1, count: 4000)
        let keys: [UInt64] = [DropoutMask.rowKey(text: 0, position: 0), DropoutMask.rowKey(text: 3, position: 1)]
        func run(_ keys: [UInt64]) -> [Float] {
            var out = [Float](repeating: 0, count: 2 * 2000)
            x.withUnsafeBufferPointer { xp in keys.withUnsafeBufferPointer { k in withPointers(&out) {
                mask.apply(xp.baseAddress!, rows: 2, width: 2000, rowKeys: k.baseAddress!, into: $0, accumulate: false)
            } } }
            return out
        }
        let first = run(keys)
        #expect(first == run(keys))
        #expect(Array(first[..<2000]) != Array(first[2000...]))
        #expect(Array(first[2000...]) == Array(run(keys.reversed())[..<2000]))
        let dropped = first.filter { $0 == 0 }.count
        #expect(abs(Double(dropped) / 4000 - 0.25) < 0.03)
        #expect(first.allSatisfy { $0 == 0 || abs($0 - 4 / 3) < 1e-6 })
    }
}
