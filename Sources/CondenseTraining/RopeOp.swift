import CondenseModel
import CondenseTensor
import Foundation

/// Rotate-half RoPE (HF layout) on every query and key head of packed rows, and its backward.
/// RoPE is a rotation per (position, frequency) pair, so its input gradient is the inverse rotation:
/// the same kernel with −sin.
struct RopeOp: Sendable {
    let table: RotaryTable
    /// −sin of `table`, for the backward rotation.
    let negatedSin: [Float]

    init(config: ModelConfig, positions: Int) {
        table = RotaryTable(
            inverseFrequencies: RotaryFrequencies.inverse(
                headDim: config.headDim, theta: config.ropeTheta, scaling: config.ropeScaling),
            positions: positions)
        negatedSin = table.sin.map { -$0 }
    }

    /// Rotates `heads` head vectors of `headDim` in each row, in place; row `i` of sequence `s` is at
    /// position `i - offsets[s]`. `inverse` applies the transposed rotation (the backward pass).
    func apply(
        _ rows: UnsafeMutablePointer<Float>, stride: Int, heads: Int, headDim: Int, offsets: [Int], inverse: Bool
    ) {
        let half = table.half
        table.cos.withUnsafeBufferPointer { cosines in
            (inverse ? negatedSin : table.sin).withUnsafeBufferPointer { sines in
                guard let cosines = cosines.baseAddress, let sines = sines.baseAddress else { return }
                for sequence in 0..<(offsets.count - 1) {
                    for row in offsets[sequence]..<offsets[sequence + 1] {
                        let position = row - offsets[sequence]
                        let cos = cosines + position * half, sin = sines + position * half
                        let base = rows + row * stride
                        for head in 0..<heads {
                            VectorMath.rotateHalf(base + head * headDim, half: half, cos: cos, sin: sin)
                        }
                    }
                }
            }
        }
    }
}
