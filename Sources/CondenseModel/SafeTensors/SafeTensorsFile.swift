import Foundation

/// One tensor entry of a safetensors header.
public struct SafeTensorInfo: Sendable, Equatable {
    public let name: String
    /// "F32", "F16", "BF16", ... as written in the header.
    public let dtype: String
    /// Outermost-first.
    public let shape: [Int]
    public let elementCount: Int
    /// Absolute byte range of the data in the file.
    public let fileRange: Range<Int>
}

/// A memory-mapped `.safetensors` file: an 8-byte little-endian header length, a JSON header mapping
/// tensor names to dtype/shape/byte range, then the data. Every range is validated at open.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    public let tensors: [String: SafeTensorInfo]
    private let file: MappedFile

    /// Headers larger than this are treated as corruption (real ones are well under 10 MB).
    private static let maxHeaderBytes = 100 << 20

    public var fileSize: Int { file.bytes.count }

    public init(path: String) throws(ModelLoadError) {
        let file = try MappedFile(path: path)
        self.file = file
        self.path = path
        var reader = ByteReader(bytes: file.bytes, path: path)
        let headerLength = try reader.readCount("safetensors header length")
        guard headerLength <= Self.maxHeaderBytes else {
            throw .corrupted(path: path, detail: "header length \(headerLength) exceeds \(Self.maxHeaderBytes) bytes")
        }
        try reader.require(headerLength, "safetensors JSON header")
        let headerBytes = Data(file.bytes[8..<(8 + headerLength)])
        let header: SafeTensorsHeader
        do {
            header = try JSONDecoder().decode(SafeTensorsHeader.self, from: headerBytes)
        } catch {
            throw .corrupted(path: path, detail: "invalid JSON header: \(Self.describe(error))")
        }
        let dataStart = 8 + headerLength
        let dataLength = file.bytes.count - dataStart
        var tensors: [String: SafeTensorInfo] = [:]
        for (name, entry) in header.entries {
            guard entry.dataOffsets.count == 2, entry.dataOffsets[0] >= 0, entry.dataOffsets[0] <= entry.dataOffsets[1] else {
                throw .corrupted(path: path, detail: "tensor '\(name)' has invalid data_offsets \(entry.dataOffsets)")
            }
            guard entry.dataOffsets[1] <= dataLength else {
                throw .truncated(path: path, detail: "data of tensor '\(name)' ends at \(entry.dataOffsets[1]), the data section has \(dataLength) bytes")
            }
            var elementCount = 1
            for size in entry.shape {
                let (product, overflow) = elementCount.multipliedReportingOverflow(by: size)
                guard size >= 0, !overflow else {
                    throw .corrupted(path: path, detail: "tensor '\(name)' has invalid shape \(entry.shape)")
                }
                elementCount = product
            }
            let byteCount = entry.dataOffsets[1] - entry.dataOffsets[0]
            if let elementSize = Self.elementSize(entry.dtype) {
                let (needed, overflow) = elementCount.multipliedReportingOverflow(by: elementSize)
                guard !overflow, needed == byteCount else {
                    throw .corrupted(path: path, detail: "tensor '\(name)' of shape \(entry.shape) \(entry.dtype) needs \(overflow ? "more than \(Int.max)" : "\(needed)") bytes, data_offsets span \(byteCount)")
                }
            }
            tensors[name] = SafeTensorInfo(
                name: name, dtype: entry.dtype, shape: entry.shape, elementCount: elementCount,
                fileRange: (dataStart + entry.dataOffsets[0])..<(dataStart + entry.dataOffsets[1]))
        }
        let byPosition = tensors.values.filter { !$0.fileRange.isEmpty }.sorted { $0.fileRange.lowerBound < $1.fileRange.lowerBound }
        for (earlier, later) in zip(byPosition, byPosition.dropFirst()) where earlier.fileRange.upperBound > later.fileRange.lowerBound {
            throw .corrupted(path: path, detail: "data of tensors '\(earlier.name)' and '\(later.name)' overlap")
        }
        self.tensors = tensors
    }

    /// The tensor as row-major F32; F32, F16 and BF16 are supported.
    public func tensorF32(named name: String) throws(ModelLoadError) -> [Float] {
        guard let info = tensors[name] else { throw .missingTensor(name: name) }
        let type: GGMLType
        switch info.dtype {
        case "F32": type = .f32
        case "F16": type = .f16
        case "BF16": type = .bf16
        default: throw .unsupportedTensorType(tensor: name, type: info.dtype)
        }
        let values = try GGMLDequantizer.dequantize(
            UnsafeRawBufferPointer(rebasing: file.bytes[info.fileRange]), type: type, elementCount: info.elementCount, tensor: name)
        file.releaseResidentPages(info.fileRange)
        return values
    }

    /// Bytes per element of the dtypes the format defines.
    private static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3": return 1
        case "I16", "U16", "F16", "BF16": return 2
        case "I32", "U32", "F32": return 4
        case "I64", "U64", "F64": return 8
        default: return nil
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context), DecodingError.typeMismatch(_, let context),
             DecodingError.valueNotFound(_, let context), DecodingError.keyNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }
}

/// A JSON object key known only at run time.
private struct DynamicCodingKey: CodingKey {
    let stringValue: String
    init(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
}

private struct SafeTensorsHeader: Decodable {
    struct Entry: Decodable {
        let dtype: String
        let shape: [Int]
        let dataOffsets: [Int]
        enum CodingKeys: String, CodingKey {
            case dtype, shape
            case dataOffsets = "data_offsets"
        }
    }

    let entries: [String: Entry]

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: DynamicCodingKey.self)
        var entries: [String: Entry] = [:]
        // "__metadata__" maps strings to strings and is not a tensor.
        for key in container.allKeys where key.stringValue != "__metadata__" {
            entries[key.stringValue] = try container.decode(Entry.self, forKey: key)
        }
        self.entries = entries
    }
}
