/// Inverted dropout whose mask is a pure function of (stream, row key, column): the embedding pass and
/// the recompute pass of gradient caching, and the backward pass, all see the same mask without
/// storing it. Element (r, c) is kept with probability 1 − p and then scaled by 1/(1 − p).
struct DropoutMask: Sendable {
    /// Identifies (seed, step, layer, target): independent masks per adapted projection, as PEFT's
    /// separate `lora_dropout` modules.
    let stream: UInt64
    /// Drop when the low 16 bits of an element's hash are below this (p quantised to 1/65536).
    private let threshold: UInt32
    private let keptScale: Float

    init(probability: Float, stream: UInt64) {
        self.stream = stream
        threshold = UInt32((Double(probability) * 65_536).rounded())
        keptScale = 1 / (1 - probability)
    }

    static func stream(seed: UInt64, step: Int, layer: Int, target: LoRATarget) -> UInt64 {
        var key = SeededRandom.mix(seed ^ 0x5EED_D40B_0000_0000)
        key = SeededRandom.mix(key ^ UInt64(truncatingIfNeeded: step))
        key = SeededRandom.mix(key ^ UInt64(truncatingIfNeeded: layer))
        return SeededRandom.mix(key ^ UInt64(target.order))
    }

    /// Key of the row holding `position` of text `text` (global index in the step's batch).
    static func rowKey(text: Int, position: Int) -> UInt64 {
        UInt64(truncatingIfNeeded: text) << 32 | UInt64(truncatingIfNeeded: position)
    }

    /// out (+)= x ⊙ mask over [rows x width], dense rows. Each element's draw is a 32-bit avalanche hash
    /// (murmur3 finalizer) of its column and the row's 64-bit seed, 16 columns per vector.
    func apply(
        _ x: UnsafePointer<Float>, rows: Int, width: Int, rowKeys: UnsafePointer<UInt64>,
        into out: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        typealias Bits = SIMD16<UInt32>
        var lanes = Bits()
        for lane in 0..<Bits.scalarCount { lanes[lane] = UInt32(lane) }
        let limit = Bits(repeating: threshold), kept = Kernels.Vector(repeating: keptScale)
        for row in 0..<rows {
            let seed = SeededRandom.mix(stream ^ rowKeys[row])
            let low = Bits(repeating: UInt32(truncatingIfNeeded: seed)), high = Bits(repeating: UInt32(truncatingIfNeeded: seed >> 32))
            let input = x + row * width, output = out + row * width
            var column = 0
            while column < width {
                var h = (low ^ (lanes &+ UInt32(truncatingIfNeeded: column))) &* 0x9E37_79B1
                h = (h ^ (h &>> 16) ^ high) &* 0x85EB_CA6B
                h = (h ^ (h &>> 13)) &* 0xC2B2_AE35
                h ^= h &>> 16
                var factors = Kernels.Vector()
                factors.replace(with: kept, where: (h & 0xFFFF) .>= limit)
                if column + Bits.scalarCount <= width {
                    let masked = Kernels.load(input, column) * factors
                    Kernels.store(accumulate ? Kernels.load(output, column) + masked : masked, output, column)
                } else {
                    for lane in 0..<(width - column) {
                        let masked = input[column + lane] * factors[lane]
                        output[column + lane] = accumulate ? output[column + lane] + masked : masked
                    }
                }
                column += Bits.scalarCount
            }
        }
    }
}
