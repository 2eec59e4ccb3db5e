import CondenseTensor
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

    /// A saved state (resume): moments and update count as a previous instance reported them.
    public init(
        firstMoment: [Float], secondMoment: [Float], steps: Int,
        beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0
    ) throws(TrainingError) {
        guard firstMoment.count == secondMoment.count, steps >= 0 else {
            throw .adapterMismatch("optimizer state has \(firstMoment.count) first and \(secondMoment.count) second moments, \(steps) steps")
        }
        self.init(parameterCount: 0, beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay)
        self.firstMoment = firstMoment
        self.secondMoment = secondMoment
        self.steps = steps
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
        let constants = UpdateConstants(
            beta1: beta1, beta2: beta2, epsilon: epsilon, stepSize: stepSize, rootCorrection2: rootCorrection2, decay: decay)
        let count = firstMoment.count
        parameters.withUnsafeMutableBufferPointer { p in
            gradients.withUnsafeBufferPointer { g in
                firstMoment.withUnsafeMutableBufferPointer { m in
                    secondMoment.withUnsafeMutableBufferPointer { v in
                        guard let p = p.baseAddress, let g = g.baseAddress, let m = m.baseAddress, let v = v.baseAddress else { return }
                        // Memory-bound (seven floats moved per parameter), so spread over the cores; the chunks
                        // are disjoint and all done before the buffers go away.
                        nonisolated(unsafe) let (parameters, gradients, first, second) = (p, g, m, v)
                        Kernels.forEachChunk(count: count) { range in
                            Self.update(parameters, gradients, first, second, range, constants)
                        }
                    }
                }
            }
        }
    }

    private struct UpdateConstants {
        let beta1, beta2, epsilon, stepSize, rootCorrection2, decay: Float
    }

    /// The update of `range`, 16 parameters at a time; the tail runs through the same vector code, so
    /// every parameter sees the same arithmetic whatever the chunking.
    private static func update(
        _ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
        _ v: UnsafeMutablePointer<Float>, _ range: Range<Int>, _ c: UpdateConstants
    ) {
        typealias Vector = Kernels.Vector
        func update(_ p: inout Vector, _ m: inout Vector, _ v: inout Vector, _ gradient: Vector) {
            m = c.beta1 * m + (1 - c.beta1) * gradient
            v = c.beta2 * v + (1 - c.beta2) * gradient * gradient
            p = p * c.decay - c.stepSize * m / (v.squareRoot() / c.rootCorrection2 + c.epsilon)
        }
        var i = range.lowerBound
        while i + Kernels.width <= range.upperBound {
            var (parameter, first, second) = (Kernels.load(p, i), Kernels.load(m, i), Kernels.load(v, i))
            update(&parameter, &first, &second, Kernels.load(g, i))
            Kernels.store(parameter, p, i)
            Kernels.store(first, m, i)
            Kernels.store(second, v, i)
            i += Kernels.width
        }
        guard i < range.upperBound else { return }
        let lanes = range.upperBound - i
        var parameter = Vector(), first = Vector(), second = Vector(), gradient = Vector()
        for lane in 0..<lanes {
            (parameter[lane], first[lane], second[lane], gradient[lane]) = (p[i + lane], m[i + lane], v[i + lane], g[i + lane])
        }
        update(&parameter, &first, &second, gradient)
        for lane in 0..<lanes { (p[i + lane], m[i + lane], v[i + lane]) = (parameter[lane], first[lane], second[lane]) }
    }
}

/// Global-norm gradient clipping as `torch.nn.utils.clip_grad_norm_`: when ‖g‖₂ > maxNorm, g is scaled
/// by maxNorm / (‖g‖₂ + 1e-6). Returns the norm before clipping.
public enum GradientClipping {
    @discardableResult
    public static func clip(_ gradients: inout [Float], maxNorm: Float) -> Float {
        gradients.withUnsafeMutableBufferPointer { g in
            guard let base = g.baseAddress else { return 0 }
            // Both passes are memory-bound: chunks side by side, partial sums added in chunk order.
            nonisolated(unsafe) let gradients = base
            let count = g.count, chunk = 1 << 20
            var partials = [Double](repeating: 0, count: (count + chunk - 1) / chunk)
            partials.withUnsafeMutableBufferPointer { partials in
                nonisolated(unsafe) let partials = partials
                Kernels.forEachChunk(count: count) { range in
                    partials[range.lowerBound / chunk] = Kernels.sumOfSquaresDouble(gradients + range.lowerBound, count: range.count)
                }
            }
            let norm = Float(partials.reduce(0, +).squareRoot())
            guard maxNorm > 0, norm > maxNorm else { return norm }
            let factor = maxNorm / (norm + 1e-6)
            Kernels.forEachChunk(count: count) { range in
                VectorMath.scale(gradients + range.lowerBound, by: factor, count: range.count)
            }
            return norm
        }
    }
}
