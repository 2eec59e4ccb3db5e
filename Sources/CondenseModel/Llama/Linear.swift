import CondenseTensor

/// y = x·Wᵀ (+ b) over packed token rows, W in [out][in] layout.
///
/// Projections that read the same input are stacked into one `Linear` (q|k|v, gate|up): one wider GEMM
/// runs closer to the machine's peak than several narrow ones. This is the single place where a
/// projection is applied, so a LoRA adapter attaches here: after the base product, add
/// (x·Aᵀ)·Bᵀ·scale to the output columns of the adapted part (stacked parts occupy consecutive
/// column ranges in stacking order).
struct Linear: Sendable {
    /// [outFeatures][inFeatures].
    let weight: Matrix
    /// [outFeatures], nil when no stacked part has a bias.
    let bias: [Float]?

    var inFeatures: Int { weight.cols }
    var outFeatures: Int { weight.rows }

    /// A single projection without bias; shares the weight's storage (no copy).
    init(_ weight: Matrix) {
        self.weight = weight
        bias = nil
    }

    /// Stacks `parts` (all with the same input width) row-wise into a copy; missing biases of a part
    /// count as zero.
    init(stacking parts: [Matrix], biases: [[Float]?]) {
        let inFeatures = parts[0].cols
        var data: [Float] = []
        data.reserveCapacity(parts.reduce(0) { $0 + $1.data.count })
        var ranges: [Range<Int>] = []
        for part in parts {
            ranges.append(data.count / inFeatures ..< data.count / inFeatures + part.rows)
            data += part.data
        }
        weight = Matrix(rows: data.count / inFeatures, cols: inFeatures, data: data)
        if biases.contains(where: { $0 != nil }) {
            var stacked = [Float](repeating: 0, count: weight.rows)
            for (range, partBias) in zip(ranges, biases) {
                if let partBias { stacked.replaceSubrange(range, with: partBias) }
            }
            bias = stacked
        } else {
            bias = nil
        }
    }

    /// output[rows x outFeatures] (row stride `outputStride`) = input·Wᵀ + b, or += when `accumulate`
    /// (a residual connection for free: the GEMM's beta = 1).
    func apply(
        _ input: UnsafePointer<Float>, rows: Int, inputStride: Int? = nil,
        into output: UnsafeMutablePointer<Float>, outputStride: Int? = nil, accumulate: Bool = false
    ) {
        let outputStride = outputStride ?? outFeatures
        weight.data.withUnsafeBufferPointer { w in
            guard let w = w.baseAddress else { return }
            GEMM.linear(
                input, rows: rows, inputStride: inputStride, weight: w, outFeatures: outFeatures,
                inFeatures: inFeatures, into: output, outputStride: outputStride, accumulate: accumulate)
        }
        guard let bias else { return }
        bias.withUnsafeBufferPointer { b in
            guard let b = b.baseAddress else { return }
            for row in 0..<rows {
                VectorMath.add(b, into: output + row * outputStride, count: outFeatures)
            }
        }
    }
}
