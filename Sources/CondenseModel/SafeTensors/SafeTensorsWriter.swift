import Foundation

/// Why a `.safetensors` file could not be written.
public enum SafeTensorsWriteError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A tensor whose name or values cannot be stored (duplicate or reserved name, values not matching the shape).
    case invalidTensor(name: String, detail: String)
    case ioError(path: String, detail: String)

    public var description: String {
        switch self {
        case let .invalidTensor(name, detail): "cannot store tensor '\(name)': \(detail)"
        case let .ioError(path, detail): "cannot write \(path): \(detail)"
        }
    }
}

/// Writes F32 tensors and string metadata in the safetensors layout that `SafeTensorsFile` reads: an 8-byte
/// little-endian header length, a JSON header (`__metadata__` first, then the tensors in sorted-name order),
/// then the data in that same order. The header is padded with spaces to a multiple of 8 bytes, so every
/// tensor's data starts 8-byte aligned in the file (as the reference implementation does).
public enum SafeTensorsWriter {
    public struct Tensor: Sendable, Equatable {
        public var name: String
        /// Outermost-first; the values are row-major.
        public var shape: [Int]
        public var values: [Float]

        public init(name: String, shape: [Int], values: [Float]) {
            self.name = name
            self.shape = shape
            self.values = values
        }
    }

    /// The file's bytes.
    public static func encode(_ tensors: [Tensor], metadata: [String: String] = [:]) throws(SafeTensorsWriteError) -> Data {
        let sorted = tensors.sorted { $0.name < $1.name }
        for (earlier, later) in zip(sorted, sorted.dropFirst()) where earlier.name == later.name {
            throw .invalidTensor(name: later.name, detail: "the name is used twice")
        }
        var entries: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { jsonString($0.key) + ":" + jsonString($0.value) }
            entries.append(jsonString("__metadata__") + ":{" + pairs.joined(separator: ",") + "}")
        }
        var offset = 0
        for tensor in sorted {
            guard tensor.name != "__metadata__" else { throw .invalidTensor(name: tensor.name, detail: "the name is reserved") }
            guard tensor.shape.allSatisfy({ $0 >= 0 }), tensor.shape.reduce(1, *) == tensor.values.count else {
                throw .invalidTensor(name: tensor.name, detail: "\(tensor.values.count) values do not fill shape \(tensor.shape)")
            }
            let byteCount = tensor.values.count * MemoryLayout<Float>.size
            entries.append(jsonString(tensor.name) + ":{\"dtype\":\"F32\",\"shape\":[" + tensor.shape.map(String.init).joined(separator: ",")
                + "],\"data_offsets\":[\(offset),\(offset + byteCount)]}")
            offset += byteCount
        }
        var headerBytes = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        headerBytes += repeatElement(UInt8(ascii: " "), count: (8 - headerBytes.count % 8) % 8)

        var data = Data(capacity: 8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: headerBytes)
        for tensor in sorted {
            #if _endian(little)
            tensor.values.withUnsafeBytes { data.append(contentsOf: $0) }
            #else
            for value in tensor.values { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            #endif
        }
        return data
    }

    /// Writes the file atomically: to a temporary file in the same directory, then renamed over `path`,
    /// so a reader never sees a partial file.
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to path: String) throws(SafeTensorsWriteError) {
        let data = try encode(tensors, metadata: metadata)
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw .ioError(path: path, detail: error.localizedDescription)
        }
    }

    /// A JSON string literal (quotes, backslashes and control characters escaped).
    static func jsonString(_ text: String) -> String {
        var escaped = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case _ where scalar.value < 0x20: escaped += String(format: "\\u%04x", scalar.value)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped + "\""
    }
}
