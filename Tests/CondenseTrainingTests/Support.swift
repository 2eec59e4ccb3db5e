import CondenseModel
import CondenseTensor
import Foundation
@testable import CondenseTraining

/// Deterministic test numbers (SplitMix64).
struct TestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func values(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in Float.random(in: -scale...scale, using: &self) }
    }
}

/// Tiny random decoders (hidden 32, 2 layers, 4 heads / 2 KV heads of dim 8, FFN 48, vocab 64) with the
/// weight statistics of trained ones (linear σ ≈ 1/√in, norm weights near 1).
enum TinyModel {
    static func config(_ architecture: Architecture = .llama) -> ModelConfig {
        ModelConfig(
            architecture: architecture, vocabSize: 64, hiddenSize: 32, intermediateSize: 48, layerCount: 2,
            headCount: 4, kvHeadCount: 2, headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10_000, ropeScaling: nil,
            maxPositionEmbeddings: 128, tieWordEmbeddings: true)
    }

    static func weights(_ architecture: Architecture = .llama, seed: UInt64 = 7) -> ModelWeights {
        let config = config(architecture)
        var random = TestRandom(seed: seed)
        func linear(_ out: Int, _ inFeatures: Int) -> Matrix {
            Matrix(rows: out, cols: inFeatures, data: random.values(out * inFeatures, scale: 1.7 / Float(inFeatures).squareRoot()))
        }
        func norm(_ count: Int) -> [Float] { random.values(count, scale: 0.2).map { 1 + $0 } }
        let hidden = config.hiddenSize, q = config.headCount * config.headDim, kv = config.kvHeadCount * config.headDim
        let layers = (0..<config.layerCount).map { _ in
            LayerWeights(
                attentionNorm: norm(hidden), wq: linear(q, hidden), wk: linear(kv, hidden), wv: linear(kv, hidden),
                wo: linear(hidden, q),
                qBias: architecture == .qwen2 ? random.values(q, scale: 0.5) : nil,
                kBias: architecture == .qwen2 ? random.values(kv, scale: 0.5) : nil,
                vBias: architecture == .qwen2 ? random.values(kv, scale: 0.5) : nil,
                qNorm: architecture == .qwen3 ? norm(config.headDim) : nil,
                kNorm: architecture == .qwen3 ? norm(config.headDim) : nil,
                ffnNorm: norm(hidden), wGate: linear(config.intermediateSize, hidden),
                wUp: linear(config.intermediateSize, hidden), wDown: linear(hidden, config.intermediateSize))
        }
        return ModelWeights(
            config: config,
            tokenEmbedding: Matrix(rows: config.vocabSize, cols: hidden, data: random.values(config.vocabSize * hidden)),
            layers: layers, finalNorm: norm(hidden))
    }

    static func tokens(_ count: Int, seed: UInt64) -> [Int32] {
        var random = TestRandom(seed: seed)
        return (0..<count).map { _ in Int32.random(in: 0..<64, using: &random) }
    }

    /// `count` pairs of random texts (lengths 3...9); each positive shares most of its text's tokens.
    static func pairs(_ count: Int, seed: UInt64) -> [TrainingPair] {
        var random = TestRandom(seed: seed)
        return (0..<count).map { index in
            let length = Int.random(in: 3...9, using: &random)
            let text = tokens(length, seed: seed &+ UInt64(index) &* 31)
            var positive = text
            positive[Int.random(in: 0..<length, using: &random)] = Int32.random(in: 0..<64, using: &random)
            return TrainingPair(text: TrainingText(tokens: text), positive: TrainingText(tokens: positive + [5]))
        }
    }
}

/// Central finite differences on sampled coordinates, compared norm-wise with an analytic gradient.
///
/// Everything runs in Float32, so a difference quotient carries rounding noise of about
/// ε·|L|/h (ε = 6e-8) plus truncation O(h²); with h = 1e-2..1e-3 on O(1) values both stay near 1e-4
/// of the gradient's scale. A wrong or missing term changes the gradient by O(1) of its scale, so the
/// relative error ‖numeric − analytic‖ / ‖analytic‖ over the samples is bounded at 1e-2: far above the
/// noise, far below any real bug.
enum GradientCheck {
    static let tolerance = 1e-2

    /// Relative error over `samples` coordinates of `x` (all when fewer).
    static func relativeError(
        _ x: [Float], analytic: [Float], step: Float = 1e-2, samples: Int = 40, seed: UInt64 = 1, within range: Range<Int>? = nil,
        loss: ([Float]) -> Double
    ) -> Double {
        var random = TestRandom(seed: seed)
        let range = range ?? x.indices
        let indices = range.count <= samples ? Array(range) : (0..<samples).map { _ in Int.random(in: range, using: &random) }
        var errorSquared: Double = 0, normSquared: Double = 0
        for index in indices {
            var plus = x, minus = x
            plus[index] += step
            minus[index] -= step
            let numeric = (loss(plus) - loss(minus)) / Double(plus[index] - minus[index])
            errorSquared += (numeric - Double(analytic[index])) * (numeric - Double(analytic[index]))
            normSquared += Double(analytic[index]) * Double(analytic[index])
        }
        return (errorSquared / max(normSquared, 1e-30)).squareRoot()
    }

    /// Σ r·y in Double: a scalar whose gradient w.r.t. y is r.
    static func project(_ y: [Float], _ r: [Float]) -> Double {
        zip(y, r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }
}

/// Runs `body` with mutable base pointers of arrays (tests only: short, explicit, no escaping).
func withPointers<R>(_ a: inout [Float], _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    a.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}
