/// Why a model file or directory could not be loaded. Every case names the offending file, key or tensor.
public enum ModelLoadError: Error, Equatable, Sendable, CustomStringConvertible {
    case fileNotFound(path: String)
    case ioError(path: String, detail: String)
    /// The file ends before a structure it declares.
    case truncated(path: String, detail: String)
    case badMagic(path: String, found: String)
    case unsupportedVersion(path: String, version: UInt32)
    /// A structurally invalid file: impossible sizes, misaligned or overlapping offsets, malformed JSON.
    case corrupted(path: String, detail: String)
    case unsupportedArchitecture(name: String)
    case unsupportedTensorType(tensor: String, type: String)
    case missingTensor(name: String)
    case shapeMismatch(tensor: String, expected: [Int], actual: [Int])
    case missingMetadata(key: String)
    case invalidMetadata(key: String, detail: String)
    case invalidTokenizer(detail: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "model file not found: \(path)"
        case .ioError(let path, let detail):
            return "cannot read \(path): \(detail)"
        case .truncated(let path, let detail):
            return "truncated file \(path): \(detail)"
        case .badMagic(let path, let found):
            return "\(path) is not a GGUF file (magic \(found))"
        case .unsupportedVersion(let path, let version):
            return "\(path): unsupported GGUF version \(version) (supported: 2, 3)"
        case .corrupted(let path, let detail):
            return "corrupted file \(path): \(detail)"
        case .unsupportedArchitecture(let name):
            return "unsupported model architecture '\(name)' (supported: llama, qwen2, qwen3)"
        case .unsupportedTensorType(let tensor, let type):
            return "tensor '\(tensor)' has unsupported type \(type)"
        case .missingTensor(let name):
            return "missing tensor '\(name)'"
        case .shapeMismatch(let tensor, let expected, let actual):
            return "tensor '\(tensor)' has shape \(actual), expected \(expected)"
        case .missingMetadata(let key):
            return "missing metadata key '\(key)'"
        case .invalidMetadata(let key, let detail):
            return "invalid metadata '\(key)': \(detail)"
        case .invalidTokenizer(let detail):
            return "invalid tokenizer: \(detail)"
        }
    }
}
