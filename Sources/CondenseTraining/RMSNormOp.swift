import CondenseTensor

/// RMSNorm over rows: y = x · r · w with r = 1/√(mean(x²) + ε) (HF Llama), and its input gradient.
/// The weight is frozen, so backward produces only ∂L/∂x:
///   ∂L/∂xᵢ = r·wᵢ·gᵢ − xᵢ · r³/n · Σⱼ wⱼ·gⱼ·xⱼ   (g = ∂L/∂y).
enum RMSNormOp {
    /// `rows` vectors of `width` at `stride` apart (input and output alike); stores r per row in
    /// `inverseRMS` when given. `output` may alias `input`.
    static func forward(
        _ input: UnsafePointer<Float>, weight: UnsafePointer<Float>, epsilon: Float, rows: Int, width: Int, stride: Int,
        into output: UnsafeMutablePointer<Float>, inverseRMS: UnsafeMutablePointer<Float>?
    ) {
        for row in 0..<rows {
            let x = input + row * stride
            if let inverseRMS {
                inverseRMS[row] = 1 / (VectorMath.sumOfSquares(x, count: width) / Float(width) + epsilon).squareRoot()
            }
            VectorMath.rmsNorm(x, weight: weight, epsilon: epsilon, count: width, into: output + row * stride)
        }
    }

    /// inputGradient (+)= ∂L/∂x for each row, from the saved input and r.
    static func backward(
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, inverseRMS: UnsafePointer<Float>,
        outputGradient: UnsafePointer<Float>, rows: Int, width: Int, stride: Int,
        into inputGradient: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        for row in 0..<rows {
            let x = input + row * stride, g = outputGradient + row * stride, dx = inputGradient + row * stride
            let r = inverseRMS[row]
            let weightedDot = Kernels.tripleDot(weight, g, x, count: width)
            let c = r * r * r * weightedDot / Float(width)
            if accumulate {
                for i in 0..<width { dx[i] += r * weight[i] * g[i] - c * x[i] }
            } else {
                for i in 0..<width { dx[i] = r * weight[i] * g[i] - c * x[i] }
            }
        }
    }
}
