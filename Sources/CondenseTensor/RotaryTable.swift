import Foundation

/// Precomputed cos/sin of RoPE angles: row `p` holds cos(p·θᵢ) and sin(p·θᵢ) for the `half = headDim/2`
/// inverse frequencies θᵢ. Angles are computed in Double so long positions keep full Float precision.
public struct RotaryTable: Sendable {
    public let positions: Int
    public let half: Int
    /// [positions x half], row-major.
    public let cos: [Float]
    public let sin: [Float]

    public init(inverseFrequencies: [Double], positions: Int) {
        self.positions = positions
        half = inverseFrequencies.count
        var cosines = [Float](repeating: 0, count: positions * half)
        var sines = [Float](repeating: 0, count: positions * half)
        for position in 0..<positions {
            for (i, frequency) in inverseFrequencies.enumerated() {
                let angle = Double(position) * frequency
                cosines[position * half + i] = Float(Foundation.cos(angle))
                sines[position * half + i] = Float(Foundation.sin(angle))
            }
        }
        cos = cosines
        sin = sines
    }
}
