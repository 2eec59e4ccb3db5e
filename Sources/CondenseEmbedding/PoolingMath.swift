import CondenseTensor

/// Pure vector math of pooling and post-processing, over row-major [length x width] hidden states.
public enum PoolingMath {
    /// One vector from the states of one sequence.
    /// - Parameter pooledRows: rows `mean` and `weighted-mean` average (the whole sequence, or the
    ///   text's own tokens). `last` and `eos` take the last row of the sequence.
    /// Weighted mean uses the rows' 1-based positions in the whole sequence as weights, normalized
    /// over the pooled rows (sentence-transformers' masked `weightedmean`); over the whole sequence
    /// this is SGPT's w_i = i / Σ j.
    public static func pool(
        _ states: ArraySlice<Float>, width: Int, pooling: Pooling, pooledRows: Range<Int>
    ) -> [Float] {
        let length = states.count / width
        var result = [Float](repeating: 0, count: width)
        guard length > 0, width > 0 else { return result }
        states.withUnsafeBufferPointer { buffer in
            result.withUnsafeMutableBufferPointer { out in
                guard let rows = buffer.baseAddress, let out = out.baseAddress else { return }
                switch pooling {
                case .last, .eos:
                    out.update(from: rows + (length - 1) * width, count: width)
                case .mean:
                    let range = pooledRows.clamped(to: 0..<length)
                    guard !range.isEmpty else { return }
                    for row in range { VectorMath.add(rows + row * width, into: out, count: width) }
                    VectorMath.scale(out, by: 1 / Float(range.count), count: width)
                case .weightedMean:
                    let range = pooledRows.clamped(to: 0..<length)
                    guard !range.isEmpty else { return }
                    // Σ positions (1-based) of the pooled rows, in Double: exact for any realistic length.
                    let first = Double(range.lowerBound + 1), last = Double(range.upperBound)
                    let weightSum = (first + last) * Double(range.count) / 2
                    for row in range {
                        VectorMath.addScaled(rows + row * width, by: Float(Double(row + 1) / weightSum), into: out, count: width)
                    }
                }
            }
        }
        return result
    }

    /// Keeps the first `dimensions` values (all when nil), then L2-normalizes when asked.
    /// A zero vector stays zero (no division by zero).
    public static func finish(_ vector: [Float], dimensions: Int?, normalize: Bool) -> [Float] {
        var result = dimensions.map { Array(vector.prefix($0)) } ?? vector
        if normalize { l2Normalize(&result) }
        return result
    }

    public static func l2Normalize(_ vector: inout [Float]) {
        vector.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            let norm = VectorMath.l2Norm(base, count: buffer.count)
            if norm > 0, norm.isFinite { VectorMath.scale(base, by: 1 / norm, count: buffer.count) }
        }
    }
}
