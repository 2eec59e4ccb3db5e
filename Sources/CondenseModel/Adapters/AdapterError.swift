/// Why a LoRA adapter could not be read, written or applied. Cases about files name the file and, where one
/// is at fault, the tensor.
public enum AdapterError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `adapter_config.json` or `adapter_model.safetensors` is absent.
    case missingFile(path: String)
    /// The directory holds only the pickled `adapter_model.bin` (named by `path`).
    case onlySafeTensorsSupported(path: String)
    /// adapter_config.json is not valid JSON or holds an invalid value.
    case invalidConfiguration(path: String, detail: String)
    /// A valid PEFT option this engine does not implement (DoRA, rank_pattern, ...).
    case unsupportedConfiguration(path: String, detail: String)
    /// The safetensors file itself is unreadable (truncated, corrupted, ...).
    case unreadableTensors(path: String, detail: String)
    /// A tensor that is not the lora_A/lora_B weight of a Llama projection.
    case unexpectedTensor(path: String, tensor: String)
    case missingTensor(path: String, tensor: String)
    /// A tensor of the wrong rank, dtype or dimensionality, or stored twice.
    case invalidTensor(path: String, tensor: String, detail: String)
    /// The adapter adapts a different number of decoder layers than the model has.
    case layerCountMismatch(adapterLayers: Int, modelLayers: Int)
    /// A factor whose shape does not fit the model's projection (`tensor` is its PEFT name).
    case shapeMismatch(tensor: String, expected: [Int], actual: [Int])
    /// An in-memory adapter that does not describe a complete LoRA adapter (cannot be written).
    case inconsistentAdapter(String)
    case writeFailed(path: String, detail: String)

    public var description: String {
        switch self {
        case let .missingFile(path):
            "adapter file not found: \(path)"
        case let .onlySafeTensorsSupported(path):
            "\(path): only adapter_model.safetensors is supported, not the pickled .bin format "
                + "(re-save the adapter with save_pretrained(..., safe_serialization=True))"
        case let .invalidConfiguration(path, detail):
            "invalid adapter configuration \(path): \(detail)"
        case let .unsupportedConfiguration(path, detail):
            "unsupported adapter configuration \(path): \(detail)"
        case let .unreadableTensors(path, detail):
            "cannot read adapter weights \(path): \(detail)"
        case let .unexpectedTensor(path, tensor):
            "\(path): tensor '\(tensor)' is not a lora_A/lora_B weight of a Llama projection "
                + "(q/k/v/o_proj under self_attn, gate/up/down_proj under mlp)"
        case let .missingTensor(path, tensor):
            "\(path): missing tensor '\(tensor)'"
        case let .invalidTensor(path, tensor, detail):
            "\(path): tensor '\(tensor)' \(detail)"
        case let .layerCountMismatch(adapterLayers, modelLayers):
            "the adapter adapts \(adapterLayers) layers, the model has \(modelLayers)"
        case let .shapeMismatch(tensor, expected, actual):
            "adapter tensor '\(tensor)' has shape \(actual), the model needs \(expected)"
        case let .inconsistentAdapter(detail):
            "inconsistent LoRA adapter: \(detail)"
        case let .writeFailed(path, detail):
            "cannot write \(path): \(detail)"
        }
    }
}
