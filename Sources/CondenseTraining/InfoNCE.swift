import CondenseTensor
import Foundation

/// In-batch contrastive loss over B (text, positive) pairs:
///   cᵢⱼ = cos(aᵢ, pⱼ),  ℓᵢⱼ = (cᵢⱼ − m·δᵢⱼ) / τ,  L = (1/B)·Σᵢ [logΣⱼ exp ℓᵢⱼ − ℓᵢᵢ]
/// (cross-entropy with the positive on the diagonal; every other positive of the batch is a negative).
/// Gradients: ∂L/∂ℓᵢⱼ = (softmaxⱼ(ℓᵢ) − δᵢⱼ)/B, ∂L/∂c = that / τ, then through the cosine:
/// for x with x̂ = x/|x| and upstream ĝ = ∂L/∂x̂: ∂L/∂x = (ĝ − x̂·(x̂·ĝ)) / |x|.
struct InfoNCE: Sendable {
    var temperature: Float
    var margin: Float

    struct Result {
        var loss: Double
        /// [B x width] gradients of the texts' and positives' embeddings.
        var textGradients: [Float]
        var positiveGradients: [Float]
    }

    /// - Parameters: texts, positives: [B x width] row-major embeddings (not normalised).
    func evaluate(texts: [Float], positives: [Float], count: Int, width: Int) -> Result {
        let normalizedTexts = Self.normalized(texts, rows: count, width: width)
        let normalizedPositives = Self.normalized(positives, rows: count, width: width)
        var similarity = [Float](repeating: 0, count: count * count)
        normalizedTexts.unit.withUnsafeBufferPointer { a in
            normalizedPositives.unit.withUnsafeBufferPointer { p in
                similarity.withUnsafeMutableBufferPointer { c in
                    guard let a = a.baseAddress, let p = p.baseAddress, let c = c.baseAddress else { return }
                    GEMM.multiply(m: count, n: count, k: width, a: a, lda: width, b: p, ldb: width, transposeB: true,
                                  c: c, ldc: count)
                }
            }
        }
        // Softmax and loss in Double: the loss is what tests differentiate numerically.
        var loss: Double = 0
        var similarityGradient = [Float](repeating: 0, count: count * count)
        var logits = [Double](repeating: 0, count: count)
        for i in 0..<count {
            var peak = -Double.infinity
            for j in 0..<count {
                let value = (Double(similarity[i * count + j]) - (i == j ? Double(margin) : 0)) / Double(temperature)
                logits[j] = value
                peak = max(peak, value)
            }
            var total: Double = 0
            for j in 0..<count { total += Foundation.exp(logits[j] - peak) }
            loss += peak + Foundation.log(total) - logits[i]
            for j in 0..<count {
                let probability = Foundation.exp(logits[j] - peak) / total
                similarityGradient[i * count + j] =
                    Float((probability - (i == j ? 1 : 0)) / (Double(count) * Double(temperature)))
            }
        }
        // ĝ_a = ∂c · p̂,  ĝ_p = ∂cᵀ · â.
        var unitTextGradients = [Float](repeating: 0, count: count * width)
        var unitPositiveGradients = [Float](repeating: 0, count: count * width)
        similarityGradient.withUnsafeBufferPointer { dc in
            normalizedTexts.unit.withUnsafeBufferPointer { a in
                normalizedPositives.unit.withUnsafeBufferPointer { p in
                    unitTextGradients.withUnsafeMutableBufferPointer { ga in
                        unitPositiveGradients.withUnsafeMutableBufferPointer { gp in
                            guard let dc = dc.baseAddress, let a = a.baseAddress, let p = p.baseAddress,
                                  let ga = ga.baseAddress, let gp = gp.baseAddress else { return }
                            GEMM.multiply(m: count, n: width, k: count, a: dc, lda: count, b: p, ldb: width, c: ga, ldc: width)
                            GEMM.multiply(m: count, n: width, k: count, a: dc, lda: count, transposeA: true,
                                          b: a, ldb: width, c: gp, ldc: width)
                        }
                    }
                }
            }
        }
        return Result(
            loss: loss / Double(count),
            textGradients: Self.throughNormalization(unitTextGradients, normalizedTexts, rows: count, width: width),
            positiveGradients: Self.throughNormalization(unitPositiveGradients, normalizedPositives, rows: count, width: width))
    }

    private struct Normalized {
        var unit: [Float]
        var norms: [Float]
    }

    /// Rows divided by their norms; a zero row stays zero (its cosine is 0 and its gradient 0).
    private static func normalized(_ rows: [Float], rows count: Int, width: Int) -> Normalized {
        var unit = rows
        var norms = [Float](repeating: 0, count: count)
        unit.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            for row in 0..<count {
                let norm = VectorMath.l2Norm(base + row * width, count: width)
                norms[row] = norm
                if norm > 0 { VectorMath.scale(base + row * width, by: 1 / norm, count: width) }
            }
        }
        return Normalized(unit: unit, norms: norms)
    }

    private static func throughNormalization(_ unitGradients: [Float], _ normalized: Normalized, rows count: Int, width: Int) -> [Float] {
        var result = unitGradients
        result.withUnsafeMutableBufferPointer { g in
            normalized.unit.withUnsafeBufferPointer { u in
                guard let g = g.baseAddress, let u = u.baseAddress else { return }
                for row in 0..<count {
                    let norm = normalized.norms[row]
                    let gr = g + row * width, ur = u + row * width
                    guard norm > 0 else {
                        gr.update(repeating: 0, count: width)
                        continue
                    }
                    let projection = VectorMath.dot(ur, gr, count: width)
                    VectorMath.addScaled(ur, by: -projection, into: gr, count: width)
                    VectorMath.scale(gr, by: 1 / norm, count: width)
                }
            }
        }
        return result
    }
}
