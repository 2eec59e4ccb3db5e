import CondenseEmbedding
import CondenseTensor

/// Pooling of one text's final hidden states into its embedding, and the gradient back to the states.
/// Same weights as `PoolingMath.pool` (inference): every pooling is a fixed weighted sum of rows,
/// e = Σᵢ wᵢ·hᵢ, so ∂L/∂hᵢ = wᵢ·∂L/∂e.
enum PoolingOp {
    /// (row, weight) pairs of the weighted sum, for a text of `length` rows pooling `pooledRows`.
    static func weights(_ pooling: Pooling, length: Int, pooledRows: Range<Int>) -> [(row: Int, weight: Float)] {
        guard length > 0 else { return [] }
        switch pooling {
        case .last, .eos:
            return [(length - 1, 1)]
        case .mean:
            let range = pooledRows.clamped(to: 0..<length)
            return range.map { ($0, 1 / Float(range.count)) }
        case .weightedMean:
            let range = pooledRows.clamped(to: 0..<length)
            let first = Double(range.lowerBound + 1), last = Double(range.upperBound)
            let weightSum = (first + last) * Double(range.count) / 2
            return range.map { ($0, Float(Double($0 + 1) / weightSum)) }
        }
    }

    /// embedding = Σ wᵢ·states[i] over [length x width] rows.
    static func forward(
        _ states: UnsafePointer<Float>, width: Int, length: Int, pooling: Pooling, pooledRows: Range<Int>,
        into embedding: UnsafeMutablePointer<Float>
    ) {
        embedding.update(repeating: 0, count: width)
        let terms = weights(pooling, length: length, pooledRows: pooledRows)
        if pooling == .mean, !terms.isEmpty {
            // Sum then divide, as inference does, so both agree to the last bit.
            for term in terms { VectorMath.add(states + term.row * width, into: embedding, count: width) }
            VectorMath.scale(embedding, by: 1 / Float(terms.count), count: width)
        } else {
            for term in terms { VectorMath.addScaled(states + term.row * width, by: term.weight, into: embedding, count: width) }
        }
    }

    /// stateGradient[i] += wᵢ·∂L/∂e (other rows untouched).
    static func backward(
        embeddingGradient: UnsafePointer<Float>, width: Int, length: Int, pooling: Pooling, pooledRows: Range<Int>,
        into stateGradient: UnsafeMutablePointer<Float>
    ) {
        for term in weights(pooling, length: length, pooledRows: pooledRows) {
            VectorMath.addScaled(embeddingGradient, by: term.weight, into: stateGradient + term.row * width, count: width)
        }
    }
}
