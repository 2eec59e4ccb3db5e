/// SplitMix64: a small, fast, seedable generator, so the same seed gives the same adapter on every run.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// The SplitMix64 finalizer: a bijective avalanche of 64 bits, also used to derive independent
    /// stream seeds from structured keys.
    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    mutating func uniform(_ low: Float, _ high: Float) -> Float {
        // 24 random bits: every Float in [0, 1) of that grid is exact.
        let unit = Float(next() >> 40) * (1 / Float(1 << 24))
        return low + (high - low) * unit
    }
}
