/// GPT-2's reversible byte <-> Unicode mapping: every byte becomes a printable character so that
/// byte-level BPE vocabularies can be stored as text ("Ġ" is the space byte 0x20).
enum ByteLevel {
    /// Bytes that stand for themselves; the others are shifted to U+0100 and up, in byte order.
    private static func isPrintable(_ value: UInt32) -> Bool {
        (33...126).contains(value) || (161...172).contains(value) || (174...255).contains(value)
    }

    /// Bytes that are not printable, in the order they were assigned U+0100, U+0101, ...
    private static let unprintableBytes: [UInt8] = (0..<256).compactMap { byte in
        isPrintable(UInt32(byte)) ? nil : UInt8(byte)
    }

    /// The character (as a Unicode scalar value) that stands for each byte.
    private static let scalarForByte: [UInt32] = {
        var table = (0..<256).map { UInt32($0) }
        for (offset, byte) in unprintableBytes.enumerated() { table[Int(byte)] = 256 + UInt32(offset) }
        return table
    }()

    /// The byte a mapped character stands for, or nil for characters outside the mapping.
    static func byte(forScalar value: UInt32) -> UInt8? {
        if value < 256 { return isPrintable(value) ? UInt8(value) : nil }
        let offset = Int(value) - 256
        return offset < unprintableBytes.count ? unprintableBytes[offset] : nil
    }

    /// The text form of raw bytes ("Ġthe" for " the").
    static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var result = String.UnicodeScalarView()
        for byte in bytes {
            if let scalar = Unicode.Scalar(scalarForByte[Int(byte)]) { result.append(scalar) }
        }
        return String(result)
    }

    /// The raw bytes a token string stands for, or nil when a character is outside the mapping
    /// (such tokens, e.g. added tokens with plain text, are their own UTF-8).
    static func decode(_ token: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.utf8.count)
        for scalar in token.unicodeScalars {
            guard let byte = byte(forScalar: scalar.value) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}
