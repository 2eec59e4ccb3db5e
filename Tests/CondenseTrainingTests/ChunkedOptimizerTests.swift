import Foundation
import Testing
@testable import CondenseTraining

/// AdamW and clipping over more parameters than one chunk (1 Mi), where the passes run side by side.
@Suite struct ChunkedOptimizerTests {
    /// A count that spans several chunks and ends in a partial vector.
    static let count = 2_500_003

    @Test func adamWOverSeveralChunksEqualsTheElementwiseFormula() throws {
        var random = TestRandom(seed: 71)
        let gradients = random.values(Self.count, scale: 0.1), initial = random.values(Self.count)
        var parameters = initial
        var optimizer = AdamW(parameterCount: Self.count, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01)
        try optimizer.update(&parameters, gradients: gradients, learningRate: 1e-3)
        // The first update, element by element in the same Float arithmetic.
        let stepSize: Float = 1e-3 / (1 - 0.9), rootCorrection: Float = (1 - 0.999 as Float).squareRoot(), decay: Float = 1 - 1e-3 * 0.01
        var mismatches = 0
        for i in stride(from: 0, to: Self.count, by: 997) + [Self.count - 1] {
            let m = 0.9 * 0 + (1 - 0.9 as Float) * gradients[i], v = 0.999 * 0 + (1 - 0.999 as Float) * gradients[i] * gradients[i]
            let expected = initial[i] * decay - stepSize * m / (v.squareRoot() / rootCorrection + 1e-8)
            if abs(parameters[i] - expected) > 1e-6 * max(1, abs(expected)) { mismatches += 1 }
            if optimizer.firstMoment[i] != m || optimizer.secondMoment[i] != v { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test func clippingOverSeveralChunksUsesTheGlobalNorm() {
        var random = TestRandom(seed: 72)
        let original = random.values(Self.count, scale: 0.01)
        let norm = original.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        var gradients = original
        let reported = GradientClipping.clip(&gradients, maxNorm: 1)
        #expect(abs(Double(reported) - norm) <= 1e-6 * norm)
        let factor = 1 / (reported + 1e-6)
        #expect(gradients.indices.allSatisfy { gradients[$0] == original[$0] * factor })
    }
}
