import CondenseModel
import Foundation
import Testing

@Suite struct SamplerTests {
    /// log-probabilities, so softmax at temperature 1 gives back these probabilities.
    static func logits(_ probabilities: [Double]) -> [Float] { probabilities.map { Float(log($0)) } }

    @Test func greedyIsArgmax() {
        let logits: [Float] = [0.5, 3, -1, 3, 2.9]
        #expect(Sampler.argmax(logits) == 1)  // first of the tied maxima
        var greedy = Sampler(temperature: 0, topP: 0.5, seed: 7)
        for _ in 0..<10 { #expect(greedy.sample(logits) == 1) }
    }

    /// The nucleus is the smallest most-probable set reaching top-p, renormalised.
    @Test func topPKeepsTheSmallestNucleus() throws {
        let logits = Self.logits([0.05, 0.5, 0.15, 0.3])
        let nucleus = Sampler.nucleus(logits, temperature: 1, topP: 0.75)
        #expect(nucleus.map(\.token) == [1, 3])
        #expect(abs(nucleus[0].probability - 0.5 / 0.8) < 1e-6 && abs(nucleus[1].probability - 0.3 / 0.8) < 1e-6)
        #expect(Sampler.nucleus(logits, temperature: 1, topP: 0.5).map(\.token) == [1])
        #expect(Sampler.nucleus(logits, temperature: 1, topP: 0.81).map(\.token) == [1, 3, 2])
        #expect(Sampler.nucleus(logits, temperature: 1, topP: 1).map(\.token) == [1, 3, 2, 0])
        #expect(Sampler.nucleus([], temperature: 1, topP: 0.9).isEmpty)
    }

    /// A large vocabulary whose nucleus needs tokens below the "likely" cut (1e-4 of the mass): the exact
    /// result must not depend on that shortcut.
    @Test func nucleusOfAFlatTailIsExact() {
        let count = 50_000
        var probabilities = [Double](repeating: 0.5 / Double(count - 1), count: count)
        probabilities[123] = 0.5
        let nucleus = Sampler.nucleus(Self.logits(probabilities), temperature: 1, topP: 0.75)
        #expect(nucleus.first?.token == 123)
        // 0.5 + k · 1e-5 >= 0.75 needs about 25,000 tail tokens, taken in id order (ties).
        #expect(abs(Double(nucleus.count - 1) - 0.25 * Double(count - 1) / 0.5) <= 2)
        #expect(nucleus.dropFirst().map(\.token).prefix(3) == [0, 1, 2])
        #expect(abs(nucleus.reduce(0) { $0 + $1.probability } - 1) < 1e-9)
    }

    @Test func temperatureSharpensAndFlattens() {
        let logits: [Float] = [2, 1, 0]
        func probabilities(_ temperature: Float) -> [Double] {
            let nucleus = Sampler.nucleus(logits, temperature: temperature, topP: 1)
            return (0..<3).map { token in nucleus.first { $0.token == token }?.probability ?? 0 }
        }
        let base = probabilities(1), cold = probabilities(0.5), hot = probabilities(2)
        let z = exp(2.0) + exp(1.0) + 1
        #expect(abs(base[0] - exp(2.0) / z) < 1e-6)
        let zCold = exp(4.0) + exp(2.0) + 1
        #expect(abs(cold[0] - exp(4.0) / zCold) < 1e-6)
        #expect(cold[0] > base[0] && base[0] > hot[0] && hot[2] > base[2])
    }

    @Test func seededSamplingIsDeterministicPerStream() {
        let logits = Self.logits([0.1, 0.2, 0.3, 0.4])
        func draws(seed: UInt64, stream: UInt64) -> [Int32] {
            var sampler = Sampler(temperature: 1, topP: 1, seed: seed, stream: stream)
            return (0..<64).map { _ in sampler.sample(logits) }
        }
        #expect(draws(seed: 1, stream: 5) == draws(seed: 1, stream: 5))
        #expect(draws(seed: 1, stream: 5) != draws(seed: 1, stream: 6))
        #expect(draws(seed: 1, stream: 5) != draws(seed: 2, stream: 5))
    }

    /// Draw frequencies follow the renormalised nucleus; tokens outside it never appear.
    @Test func samplingFollowsTheNucleus() {
        let logits = Self.logits([0.05, 0.5, 0.15, 0.3])
        var sampler = Sampler(temperature: 1, topP: 0.75, seed: 3)
        var counts = [Int](repeating: 0, count: 4)
        let draws = 20_000
        for _ in 0..<draws { counts[Int(sampler.sample(logits))] += 1 }
        #expect(counts[0] == 0 && counts[2] == 0)
        // 0.625 expected; 4σ of a binomial over 20,000 draws is about 0.014.
        #expect(abs(Double(counts[1]) / Double(draws) - 0.625) < 0.014)
    }
}
