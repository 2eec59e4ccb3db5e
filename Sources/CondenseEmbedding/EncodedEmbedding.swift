/// A vector in a wire precision (the layout of `condense.v1.Vector`): float32 values, or bytes for
/// float16 (IEEE half, little-endian), int8 (value = signed byte × scale) and binary (1 bit per
/// dimension, 1 = component > 0, most significant bit first, last byte zero-padded).
public struct EncodedEmbedding: Sendable, Equatable {
    public var precision: OutputPrecision
    public var dimensions: Int
    /// float32 only.
    public var values: [Float]
    /// float16, int8 and binary.
    public var data: [UInt8]
    /// int8 only; 0 otherwise.
    public var scale: Float

    public init(_ vector: [Float], precision: OutputPrecision) {
        self.precision = precision
        dimensions = vector.count
        values = []
        data = []
        scale = 0
        switch precision {
        case .float32: values = vector
        case .float16: data = Self.float16Bytes(vector)
        case .int8: (data, scale) = Self.int8Bytes(vector)
        case .binary: data = Self.binaryBytes(vector)
        }
    }

    /// The float values the encoding stands for (binary: +1 for a set bit, -1 otherwise).
    public func decoded() -> [Float] {
        switch precision {
        case .float32: values
        case .float16: Self.floats(fromFloat16: data)
        case .int8: Self.floats(fromInt8: data, scale: scale)
        case .binary: Self.signs(fromBinary: data, dimensions: dimensions)
        }
    }

    // MARK: Pure encoders and decoders

    public static func float16Bytes(_ vector: [Float]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: vector.count * 2)
        for (index, value) in vector.enumerated() {
            let bits = Float16(value).bitPattern
            bytes[2 * index] = UInt8(truncatingIfNeeded: bits)
            bytes[2 * index + 1] = UInt8(truncatingIfNeeded: bits >> 8)
        }
        return bytes
    }

    public static func floats(fromFloat16 bytes: [UInt8]) -> [Float] {
        (0..<(bytes.count / 2)).map { index in
            Float(Float16(bitPattern: UInt16(bytes[2 * index]) | UInt16(bytes[2 * index + 1]) << 8))
        }
    }

    /// Symmetric scaling: scale = max |v| / 127, byte = round(v / scale). Non-finite components
    /// become 0 (they cannot be scaled); an all-zero vector has scale 0.
    public static func int8Bytes(_ vector: [Float]) -> (bytes: [UInt8], scale: Float) {
        var maxMagnitude: Float = 0
        for value in vector where value.isFinite { maxMagnitude = max(maxMagnitude, value.magnitude) }
        guard maxMagnitude > 0 else { return ([UInt8](repeating: 0, count: vector.count), 0) }
        let scale = maxMagnitude / 127
        let bytes = vector.map { value -> UInt8 in
            guard value.isFinite else { return 0 }
            let level = max(-127, min(127, (value / scale).rounded()))
            return UInt8(bitPattern: Int8(level))
        }
        return (bytes, scale)
    }

    public static func floats(fromInt8 bytes: [UInt8], scale: Float) -> [Float] {
        bytes.map { Float(Int8(bitPattern: $0)) * scale }
    }

    public static func binaryBytes(_ vector: [Float]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: (vector.count + 7) / 8)
        for (index, value) in vector.enumerated() where value > 0 {
            bytes[index / 8] |= 0x80 >> UInt8(index % 8)
        }
        return bytes
    }

    public static func signs(fromBinary bytes: [UInt8], dimensions: Int) -> [Float] {
        (0..<min(dimensions, bytes.count * 8)).map { index in
            bytes[index / 8] & (0x80 >> UInt8(index % 8)) != 0 ? 1 : -1
        }
    }
}
