import Foundation

/// Learning rate with linear warmup then linear decay to 0, as HF `get_linear_schedule_with_warmup`:
/// for optimizer step index t (0-based), lr = base·t/warmup while t < warmup, then
/// base·max(0, (total − t)/(total − warmup)). Like HF, step 0 of a warmup runs at lr 0.
public struct LearningRateSchedule: Sendable, Equatable {
    public var baseRate: Float
    public var warmupSteps: Int
    public var totalSteps: Int

    public init(baseRate: Float, warmupSteps: Int, totalSteps: Int) {
        self.baseRate = baseRate
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    public func rate(atStep step: Int) -> Float {
        if step < warmupSteps { return baseRate * Float(step) / Float(max(1, warmupSteps)) }
        let remaining = Float(totalSteps - step) / Float(max(1, totalSteps - warmupSteps))
        return baseRate * max(0, remaining)
    }
}

/// AdamW as `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments):
///   p ← p·(1 − lr·λ);  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
///   p ← p − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε).
public struct AdamW: Sendable, Equatable {
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float
    /// First and second moments, one per parameter.
    public private(set) var firstMoment: [Float]
    public private(set) var secondMoment: [Float]
    /// Updates applied so far (t of the bias correction is `steps` after an update).
    public private(set) var steps: Int

    public init(parameterCount: Int, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        firstMoment = [Float](repeating: 0, count: parameterCount)
        secondMoment = [Float](repeating: 0, count: parameterCount)
        steps = 0
    }

    /// One update of `parameters` with `gradients` (same count as the moments).
    public mutating func update(_ parameters: inout [Float], gradients: [Float], learningRate: Float) throws(TrainingError) {
        guard parameters.count == firstMoment.count, gradients.count == firstMoment.count else {
            throw .adapterMismatch(
                "AdamW holds moments of \(firstMoment.count) parameters, got \(parameters.count) parameters and \(gradients.count) gradients")
        }
        steps += 1
        let t = Float(steps)
        let correction1 = 1 - pow(beta1, t), correction2 = 1 - pow(beta2, t)
        let stepSize = learningRate / correction1, rootCorrection2 = correction2.squareRoot()
        let decay = 1 - learningRate * weightDecay
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        parameters.withUnsafeMutableBufferPointer { p in
            gradients.withUnsafeBufferPointer { g in
                firstMoment.withUnsafeMutableBufferPointer { m in
                    secondMoment.withUnsafeMutableBufferPointer { v in
                        for i in 0..<p.count {
                            let gradient = g[i]
                            m[i] = b1 * m[i] + (1 - b1) * gradient
                            v[i] = b2 * v[i] + (1 - b2) * gradient * gradient
                            p[i] = p[i] * decay - stepSize * m[i] / (v[i].squareRoot() / rootCorrection2 + eps)
                        }
                    }
                }
            }
        }
    }
}

/// Global-norm gradient clipping as `torch.nn.utils.clip_grad_norm_`: when ‖g‖₂ > maxNorm, g is scaled
/// by maxNorm / (‖g‖₂ + 1e-6). Returns the norm before clipping.
public enum GradientClipping {
    @discardableResult
    public static func clip(_ gradients: inout [Float], maxNorm: Float) -> Float {
        let norm = Float(gradients.withUnsafeBufferPointer { g in
            g.baseAddress.map { Kernels.sumOfSquaresDouble($0, count: g.count) } ?? 0
        }.squareRoot())
        guard maxNorm > 0, norm > maxNorm else { return norm }
        let factor = maxNorm / (norm + 1e-6)
        for i in gradients.indices { gradients[i] *= factor }
        return norm
    }
}
