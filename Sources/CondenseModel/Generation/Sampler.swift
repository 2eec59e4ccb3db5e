import Foundation

/// Picks the next token from logits: greedy (argmax) at temperature 0, else a draw from
/// softmax(logits / temperature) restricted to the top-p nucleus. Seeded, so a (seed, stream) pair always
/// gives the same tokens for the same logits.
public struct Sampler: Sendable {
    public let temperature: Float
    public let topP: Float
    private var random: SeededRandom

    /// A token of the nucleus with its probability, renormalised over the nucleus.
    public struct Candidate: Sendable, Equatable {
        public var token: Int32
        public var probability: Double
    }

    /// - Parameters:
    ///   - temperature: <= 0 means greedy.
    ///   - topP: nucleus mass in (0, 1]; 1 keeps the whole distribution.
    ///   - stream: an independent random stream per item (e.g. the input index), so an item's result does
    ///     not depend on which items were sampled before it.
    public init(temperature: Float, topP: Float = 1, seed: UInt64, stream: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        random = SeededRandom(seed: seed, stream: stream)
    }

    public mutating func sample(_ logits: [Float]) -> Int32 {
        guard temperature > 0 else { return Self.argmax(logits) }
        let nucleus = Self.nucleus(logits, temperature: temperature, topP: topP)
        var remaining = random.nextUnitInterval()
        for candidate in nucleus {
            remaining -= candidate.probability
            if remaining < 0 { return candidate.token }
        }
        // Rounding left a sliver of mass past the last candidate.
        return nucleus.last?.token ?? Self.argmax(logits)
    }

    /// The first index of the largest logit (0 for empty logits).
    public static func argmax(_ logits: [Float]) -> Int32 {
        var best = 0
        for index in logits.indices where logits[index] > logits[best] { best = index }
        return Int32(best)
    }

    /// The smallest set of most probable tokens (ties: lower id first) whose probabilities under
    /// softmax(logits / temperature) sum to at least `topP`, most probable first, renormalised to sum to 1.
    public static func nucleus(_ logits: [Float], temperature: Float, topP: Float) -> [Candidate] {
        guard let maxLogit = logits.max() else { return [] }
        let inverseTemperature = 1 / Double(temperature)
        let weights = logits.map { Foundation.exp((Double($0) - Double(maxLogit)) * inverseTemperature) }
        let total = weights.reduce(0, +)
        let target = Double(min(max(topP, 0), 1)) * total

        func descending(_ a: Int, _ b: Int) -> Bool { weights[a] > weights[b] || (weights[a] == weights[b] && a < b) }
        func prefix(reaching target: Double, of order: [Int]) -> [Int]? {
            var mass = 0.0
            for (count, index) in order.enumerated() {
                mass += weights[index]
                if mass >= target { return Array(order[...count]) }
            }
            return nil
        }
        // The nucleus is usually a few tokens: sort only the likely ones (every token left out is less
        // probable than every token kept, so the result is exact) and sort everything only if they fall short.
        let likely = weights.indices.filter { weights[$0] >= total * 1e-4 }.sorted(by: descending)
        let kept: [Int]
        if topP < 1, let nucleus = prefix(reaching: target, of: likely) {
            kept = nucleus
        } else {
            let all = weights.indices.sorted(by: descending)
            // topP = 1, or a sum rounded just below the target: everything.
            kept = topP < 1 ? prefix(reaching: target, of: all) ?? all : all
        }
        let keptMass = kept.reduce(0) { $0 + weights[$1] }
        return kept.map { Candidate(token: Int32($0), probability: weights[$0] / keptMass) }
    }
}

/// SplitMix64 with a seed mixed from (seed, stream).
struct SeededRandom: Sendable {
    private var state: UInt64

    init(seed: UInt64, stream: UInt64) {
        state = Self.mix(seed &+ Self.mix(stream &+ 0x632B_E59B_D9B4_E019))
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// Uniform in [0, 1), 53 random bits.
    mutating func nextUnitInterval() -> Double { Double(next() >> 11) * 0x1p-53 }

    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
