/// Writes small GGUF files byte by byte, including deliberately broken ones.
struct GGUFTestFileBuilder {
    enum Value {
        case uint32(UInt32), int32(Int32), float32(Float), bool(UInt8), string(String), uint64(UInt64)
        case int8(Int8), uint8(UInt8), int16(Int16), uint16(UInt16), int64(Int64), float64(Double)
        case stringArray([String]), int32Array([Int32])
        /// An arbitrary type code followed by raw bytes, for malformed entries.
        case raw(type: UInt32, bytes: [UInt8])
    }

    struct Tensor {
        var name: String
        var dimensions: [UInt64]
        var type: UInt32
        var data: [UInt8]
        /// Relative data offset; nil places the tensor after the previous one, aligned.
        var offset: UInt64?
    }

    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var metadata: [(String, Value)] = []
    var tensors: [Tensor] = []
    var alignment = 32

    func bytes() -> [UInt8] {
        var out: [UInt8] = magic
        append(version, to: &out)
        append(UInt64(tensors.count), to: &out)
        append(UInt64(metadata.count), to: &out)
        for (key, value) in metadata {
            appendString(key, to: &out)
            appendValue(value, to: &out)
        }
        var nextOffset: UInt64 = 0
        var offsets: [UInt64] = []
        for tensor in tensors {
            appendString(tensor.name, to: &out)
            append(UInt32(tensor.dimensions.count), to: &out)
            for dimension in tensor.dimensions { append(dimension, to: &out) }
            append(tensor.type, to: &out)
            let offset = tensor.offset ?? nextOffset
            append(offset, to: &out)
            offsets.append(offset)
            nextOffset = (offset + UInt64(tensor.data.count) + UInt64(alignment) - 1) / UInt64(alignment) * UInt64(alignment)
        }
        while out.count % alignment != 0 { out.append(0) }
        let dataStart = out.count
        for (tensor, offset) in zip(tensors, offsets) {
            let end = dataStart + Int(offset) + tensor.data.count
            if out.count < end { out += [UInt8](repeating: 0, count: end - out.count) }
            out.replaceSubrange((dataStart + Int(offset))..<end, with: tensor.data)
        }
        return out
    }

    private func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out += $0 }
    }

    private func appendString(_ string: String, to out: inout [UInt8]) {
        append(UInt64(string.utf8.count), to: &out)
        out += Array(string.utf8)
    }

    private func appendValue(_ value: Value, to out: inout [UInt8]) {
        switch value {
        case .uint8(let v): append(UInt32(0), to: &out); append(v, to: &out)
        case .int8(let v): append(UInt32(1), to: &out); append(v, to: &out)
        case .uint16(let v): append(UInt32(2), to: &out); append(v, to: &out)
        case .int16(let v): append(UInt32(3), to: &out); append(v, to: &out)
        case .uint32(let v): append(UInt32(4), to: &out); append(v, to: &out)
        case .int32(let v): append(UInt32(5), to: &out); append(v, to: &out)
        case .float32(let v): append(UInt32(6), to: &out); append(v.bitPattern, to: &out)
        case .bool(let v): append(UInt32(7), to: &out); append(v, to: &out)
        case .string(let v): append(UInt32(8), to: &out); appendString(v, to: &out)
        case .uint64(let v): append(UInt32(10), to: &out); append(v, to: &out)
        case .int64(let v): append(UInt32(11), to: &out); append(v, to: &out)
        case .float64(let v): append(UInt32(12), to: &out); append(v.bitPattern, to: &out)
        case .stringArray(let strings):
            append(UInt32(9), to: &out); append(UInt32(8), to: &out); append(UInt64(strings.count), to: &out)
            for string in strings { appendString(string, to: &out) }
        case .int32Array(let values):
            append(UInt32(9), to: &out); append(UInt32(5), to: &out); append(UInt64(values.count), to: &out)
            for value in values { append(value, to: &out) }
        case .raw(let type, let bytes):
            append(type, to: &out); out += bytes
        }
    }
}

/// The first position of `needle` in `haystack`.
func bytePosition(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard !needle.isEmpty, needle.count <= haystack.count else { return nil }
    for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
        if Array(haystack[start..<(start + needle.count)]) == needle { return start }
    }
    return nil
}

extension Array where Element == UInt8 {
    /// Overwrites bytes at `offset` with the little-endian encoding of `value`.
    mutating func patch<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        Swift.withUnsafeBytes(of: value.littleEndian) { replaceSubrange(offset..<(offset + $0.count), with: $0) }
    }
}
