import CondenseTensor

/// y = x·Wᵀ (+ b) over packed token rows, W in [out][in] layout, packed for the engine's kernels
/// (`PackedWeight`: no copy of the weights per call, each row independent of the batch, bit for bit).
///
/// Projections that read the same input are stacked into one `Linear` (q|k|v, gate|up): one wider product
/// runs closer to the machine's peak than several narrow ones. Stacked parts occupy consecutive output
/// column ranges in stacking order.
struct Linear: Sendable {
    let weight: PackedWeight
    /// [outFeatures], nil when no stacked part has a bias.
    let bias: [Float]?

    var inFeatures: Int { weight.inFeatures }
    var outFeatures: Int { weight.outFeatures }

    /// A single projection without bias.
    init(_ weight: Matrix) {
        self.init(stacking: [weight], biases: [nil])
    }

    /// Stacks `parts` (all with the same input width) row-wise; missing biases of a part count as zero.
    init(stacking parts: [Matrix], biases: [[Float]?]) {
        weight = PackedWeight(stacking: parts)
        if biases.contains(where: { $0 != nil }) {
            var stacked: [Float] = []
            stacked.reserveCapacity(weight.outFeatures)
            for (part, partBias) in zip(parts, biases) {
                stacked += partBias ?? [Float](repeating: 0, count: part.rows)
            }
            bias = stacked
        } else {
            bias = nil
        }
    }

    /// output[rows x outFeatures] (row stride `outputStride`) = input·Wᵀ + b, or += when `accumulate`
    /// (a residual connection for free).
    func apply(
        _ input: UnsafePointer<Float>, rows: Int, inputStride: Int? = nil,
        into output: UnsafeMutablePointer<Float>, outputStride: Int? = nil, accumulate: Bool = false
    ) {
        let outputStride = outputStride ?? outFeatures
        weight.apply(input, rows: rows, inputStride: inputStride, into: output, outputStride: outputStride,
                     accumulate: accumulate)
        guard let bias else { return }
        bias.withUnsafeBufferPointer { b in
            guard let b = b.baseAddress else { return }
            for row in 0..<rows {
                VectorMath.add(b, into: output + row * outputStride, count: outFeatures)
            }
        }
    }
}
