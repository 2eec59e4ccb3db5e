/// One tensor as described in a GGUF file's tensor-info table.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml order: `dimensions[0]` is the contiguous (innermost) one, so a linear layer's weight
    /// [out][in] is stored as [in, out].
    public let dimensions: [Int]
    public let type: GGMLType
    public let elementCount: Int
    public let byteCount: Int
    /// Absolute offset of the tensor data in the file.
    public let fileOffset: Int

    /// Outermost-first shape, as PyTorch/safetensors write it.
    public var shape: [Int] { dimensions.reversed() }
}

/// A memory-mapped GGUF (version 2 or 3) model file. Parsing validates the header, every metadata
/// entry and every tensor's data range up front; tensor data is dequantized on request. Immutable
/// after init, so one instance may be shared across threads.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    /// Alignment of tensor data (`general.alignment`, default 32).
    public let alignment: Int
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let tensorInfos: [GGUFTensorInfo]
    private let metadata: [String: GGUFValue]
    private let tensorIndex: [String: Int]
    private let file: MappedFile

    public static let defaultAlignment = 32
    /// ggml tensors have at most 4 dimensions.
    private static let maxDimensions = 4
    /// Arrays of arrays are legal GGUF; deeper nesting than this is treated as corruption.
    private static let maxArrayNesting = 8

    public var fileSize: Int { file.bytes.count }

    public init(path: String) throws(ModelLoadError) {
        let file = try MappedFile(path: path)
        self.file = file
        self.path = path
        var reader = ByteReader(bytes: file.bytes, path: path)

        try reader.require(4, "GGUF magic")
        let magic = (0..<4).map { file.bytes[$0] }
        guard magic == Array("GGUF".utf8) else {
            throw .badMagic(path: path, found: Self.describeMagic(magic))
        }
        try reader.skip(4, "GGUF magic")
        version = try reader.read(UInt32.self, "version")
        guard version == 2 || version == 3 else { throw .unsupportedVersion(path: path, version: version) }
        let tensorCount = try reader.readCount("tensor count")
        let metadataCount = try reader.readCount("metadata count")

        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        for index in 0..<metadataCount {
            let key = try Self.readString(&reader, "metadata key #\(index)")
            let rawType = try reader.read(UInt32.self, "type of metadata '\(key)'")
            let value = try Self.readValue(&reader, rawType: rawType, key: key)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw .corrupted(path: path, detail: "metadata key '\(key)' appears twice")
            }
            keys.append(key)
        }
        metadataKeys = keys
        self.metadata = metadata

        var alignment = Self.defaultAlignment
        if let value = metadata["general.alignment"] {
            guard let declared = value.intValue, declared > 0, declared % 8 == 0, declared <= 1 << 20 else {
                throw .invalidMetadata(key: "general.alignment", detail: "must be a positive multiple of 8, is \(value)")
            }
            alignment = declared
        }
        self.alignment = alignment

        var infos: [GGUFTensorInfo] = []
        var relativeOffsets: [Int] = []
        var index: [String: Int] = [:]
        for tensorNumber in 0..<tensorCount {
            let name = try Self.readString(&reader, "name of tensor #\(tensorNumber)")
            let dimensionCount = Int(try reader.read(UInt32.self, "dimension count of '\(name)'"))
            guard (1...Self.maxDimensions).contains(dimensionCount) else {
                throw .corrupted(path: path, detail: "tensor '\(name)' has \(dimensionCount) dimensions (1...\(Self.maxDimensions) allowed)")
            }
            var dimensions: [Int] = []
            var elementCount = 1
            for axis in 0..<dimensionCount {
                let size = try reader.readCount("dimension \(axis) of '\(name)'")
                let (product, overflow) = elementCount.multipliedReportingOverflow(by: size)
                guard !overflow, product <= file.bytes.count * 8 else {
                    throw .corrupted(path: path, detail: "tensor '\(name)' dimensions are too large for the file")
                }
                elementCount = product
                dimensions.append(size)
            }
            let type = GGMLType(rawValue: try reader.read(UInt32.self, "type of '\(name)'"))
            guard let layout = type.blockLayout else {
                throw .unsupportedTensorType(tensor: name, type: type.description)
            }
            guard dimensions[0] % layout.elements == 0 else {
                throw .corrupted(path: path, detail: "tensor '\(name)' row length \(dimensions[0]) is not a multiple of the \(type) block size \(layout.elements)")
            }
            let offset = try reader.readCount("data offset of '\(name)'")
            guard offset % alignment == 0 else {
                throw .corrupted(path: path, detail: "tensor '\(name)' data offset \(offset) is not aligned to \(alignment)")
            }
            guard index.updateValue(infos.count, forKey: name) == nil else {
                throw .corrupted(path: path, detail: "tensor '\(name)' appears twice")
            }
            infos.append(GGUFTensorInfo(
                name: name, dimensions: dimensions, type: type, elementCount: elementCount,
                byteCount: elementCount / layout.elements * layout.bytes, fileOffset: 0))
            relativeOffsets.append(offset)
        }

        let headerEnd = reader.offset
        let dataStart = (headerEnd + alignment - 1) / alignment * alignment
        // Place every tensor and check it lies inside the file and overlaps no other tensor.
        infos = try zip(infos, relativeOffsets).map { (info, offset) throws(ModelLoadError) in
            let (start, overflow) = dataStart.addingReportingOverflow(offset)
            guard !overflow, start <= file.bytes.count, info.byteCount <= file.bytes.count - start else {
                throw .truncated(path: path, detail: "data of tensor '\(info.name)' (\(info.byteCount) bytes at \(dataStart) + \(offset)) extends beyond the file end at \(file.bytes.count)")
            }
            return GGUFTensorInfo(
                name: info.name, dimensions: info.dimensions, type: info.type, elementCount: info.elementCount,
                byteCount: info.byteCount, fileOffset: start)
        }
        let byPosition = infos.filter { $0.byteCount > 0 }.sorted { $0.fileOffset < $1.fileOffset }
        for (earlier, later) in zip(byPosition, byPosition.dropFirst()) where earlier.fileOffset + earlier.byteCount > later.fileOffset {
            throw .corrupted(path: path, detail: "data of tensors '\(earlier.name)' and '\(later.name)' overlap")
        }
        tensorInfos = infos
        tensorIndex = index
    }

    // MARK: Metadata

    public func value(_ key: String) -> GGUFValue? { metadata[key] }

    public func string(_ key: String) throws(ModelLoadError) -> String? {
        guard let value = metadata[key] else { return nil }
        guard case .string(let string) = value else { throw mismatch(key, value, "string") }
        return string
    }

    public func int(_ key: String) throws(ModelLoadError) -> Int? {
        guard let value = metadata[key] else { return nil }
        guard let int = value.intValue else { throw mismatch(key, value, "integer") }
        return int
    }

    public func float(_ key: String) throws(ModelLoadError) -> Float? {
        guard let value = metadata[key] else { return nil }
        guard let float = value.floatValue else { throw mismatch(key, value, "number") }
        return float
    }

    public func bool(_ key: String) throws(ModelLoadError) -> Bool? {
        guard let value = metadata[key] else { return nil }
        guard case .bool(let bool) = value else { throw mismatch(key, value, "bool") }
        return bool
    }

    public func stringArray(_ key: String) throws(ModelLoadError) -> [String]? {
        guard let value = metadata[key] else { return nil }
        guard case .array(let array) = value, array.elementType == .string else { throw mismatch(key, value, "array of strings") }
        var reader = ByteReader(bytes: file.bytes, path: path, offset: array.offset)
        var strings: [String] = []
        strings.reserveCapacity(array.count)
        for element in 0..<array.count {
            strings.append(try Self.readString(&reader, "element \(element) of '\(key)'"))
        }
        return strings
    }

    /// An integer array as Int32 (token types, ids); fails if an element does not fit.
    public func int32Array(_ key: String) throws(ModelLoadError) -> [Int32]? {
        guard let value = metadata[key] else { return nil }
        guard case .array(let array) = value,
              [.uint8, .int8, .uint16, .int16, .uint32, .int32, .uint64, .int64].contains(array.elementType) else {
            throw mismatch(key, value, "array of integers")
        }
        var reader = ByteReader(bytes: file.bytes, path: path, offset: array.offset)
        var result: [Int32] = []
        result.reserveCapacity(array.count)
        for element in 0..<array.count {
            let what = "element \(element) of '\(key)'"
            let wide: Int64
            switch array.elementType {
            case .uint8: wide = Int64(try reader.read(UInt8.self, what))
            case .int8: wide = Int64(try reader.read(Int8.self, what))
            case .uint16: wide = Int64(try reader.read(UInt16.self, what))
            case .int16: wide = Int64(try reader.read(Int16.self, what))
            case .uint32: wide = Int64(try reader.read(UInt32.self, what))
            case .int32: wide = Int64(try reader.read(Int32.self, what))
            case .int64: wide = try reader.read(Int64.self, what)
            default:
                let raw = try reader.read(UInt64.self, what)
                wide = raw > UInt64(Int64.max) ? Int64.max : Int64(raw)
            }
            guard let narrow = Int32(exactly: wide) else {
                throw .invalidMetadata(key: key, detail: "element \(element) = \(wide) does not fit in Int32")
            }
            result.append(narrow)
        }
        return result
    }

    private func mismatch(_ key: String, _ value: GGUFValue, _ expected: String) -> ModelLoadError {
        .invalidMetadata(key: key, detail: "expected \(expected), found \(value.typeName)")
    }

    // MARK: Tensors

    public func tensorInfo(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensorInfos[$0] }
    }

    /// The tensor's elements as F32, in storage order (row-major over `shape`).
    public func tensorF32(named name: String) throws(ModelLoadError) -> [Float] {
        guard let info = tensorInfo(named: name) else { throw .missingTensor(name: name) }
        let range = info.fileOffset..<(info.fileOffset + info.byteCount)
        let values = try GGMLDequantizer.dequantize(
            UnsafeRawBufferPointer(rebasing: file.bytes[range]), type: info.type, elementCount: info.elementCount, tensor: name)
        file.releaseResidentPages(range)
        return values
    }

    // MARK: Parsing

    private static func readString(_ reader: inout ByteReader, _ what: @autoclosure () -> String) throws(ModelLoadError) -> String {
        let length = try reader.readCount("length of \(what())")
        return try reader.readString(byteCount: length, what())
    }

    private static func readValue(_ reader: inout ByteReader, rawType: UInt32, key: String) throws(ModelLoadError) -> GGUFValue {
        guard let type = GGUFValueType(rawValue: rawType) else {
            throw .corrupted(path: reader.path, detail: "metadata '\(key)' has unknown value type \(rawType)")
        }
        let what = "value of metadata '\(key)'"
        switch type {
        case .uint8: return .uint8(try reader.read(UInt8.self, what))
        case .int8: return .int8(try reader.read(Int8.self, what))
        case .uint16: return .uint16(try reader.read(UInt16.self, what))
        case .int16: return .int16(try reader.read(Int16.self, what))
        case .uint32: return .uint32(try reader.read(UInt32.self, what))
        case .int32: return .int32(try reader.read(Int32.self, what))
        case .uint64: return .uint64(try reader.read(UInt64.self, what))
        case .int64: return .int64(try reader.read(Int64.self, what))
        case .float32: return .float32(try reader.readFloat(what))
        case .float64: return .float64(try reader.readDouble(what))
        case .bool:
            let byte = try reader.read(UInt8.self, what)
            guard byte <= 1 else { throw .corrupted(path: reader.path, detail: "metadata '\(key)' bool has value \(byte)") }
            return .bool(byte == 1)
        case .string: return .string(try readString(&reader, what))
        case .array:
            let elementRaw = try reader.read(UInt32.self, "element type of '\(key)'")
            guard let elementType = GGUFValueType(rawValue: elementRaw) else {
                throw .corrupted(path: reader.path, detail: "metadata '\(key)' has unknown array element type \(elementRaw)")
            }
            let count = try reader.readCount("element count of '\(key)'")
            let start = reader.offset
            try skipElements(&reader, type: elementType, count: count, key: key, depth: 1)
            return .array(GGUFArray(elementType: elementType, count: count, offset: start))
        }
    }

    /// Walks over `count` array elements, checking each lies inside the file.
    private static func skipElements(_ reader: inout ByteReader, type: GGUFValueType, count: Int, key: String, depth: Int) throws(ModelLoadError) {
        if let size = type.fixedSize {
            let (total, overflow) = size.multipliedReportingOverflow(by: count)
            guard !overflow else { throw .truncated(path: reader.path, detail: "array '\(key)' of \(count) elements exceeds the file") }
            try reader.skip(total, "array '\(key)' of \(count) \(type) elements")
            return
        }
        guard depth <= maxArrayNesting else {
            throw .corrupted(path: reader.path, detail: "array '\(key)' nests deeper than \(maxArrayNesting) levels")
        }
        for element in 0..<count {
            if type == .string {
                let length = try reader.readCount("length of element \(element) of '\(key)'")
                try reader.skip(length, "element \(element) of '\(key)'")
            } else {
                let innerRaw = try reader.read(UInt32.self, "element type of '\(key)'[\(element)]")
                guard let innerType = GGUFValueType(rawValue: innerRaw) else {
                    throw .corrupted(path: reader.path, detail: "metadata '\(key)' has unknown array element type \(innerRaw)")
                }
                let innerCount = try reader.readCount("element count of '\(key)'[\(element)]")
                try skipElements(&reader, type: innerType, count: innerCount, key: key, depth: depth + 1)
            }
        }
    }

    private static func describeMagic(_ bytes: [UInt8]) -> String {
        let printable = bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
        let hex = bytes.map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return byte < 16 ? "0" + digits : digits
        }.joined()
        return printable ? "\"\(String(decoding: bytes, as: UTF8.self))\" (0x\(hex))" : "0x\(hex)"
    }
}
