import CondenseModel

/// Why a training configuration or batch was refused.
public enum TrainingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A hyperparameter outside its valid range, e.g. `rank 0` or `temperature -1`.
    case invalidConfiguration(String)
    /// The model weights do not describe a working decoder (shape or configuration error).
    case invalidModel(String)
    /// A step needs at least two pairs: InfoNCE needs in-batch negatives.
    case batchTooSmall(pairs: Int)
    /// A text with no tokens.
    case emptyText(index: Int)
    /// A token id outside `0..<vocabSize`.
    case tokenOutOfRange(text: Int, position: Int, token: Int32, vocabSize: Int)
    /// A text longer than the rotary table covers.
    case textTooLong(text: Int, length: Int, limit: Int)
    /// An adapter whose layout does not match the model or configuration it is used with.
    case adapterMismatch(String)
    /// PEFT adapter files that could not be read or written, or that do not fit the model.
    case adapterFile(AdapterError)

    public var description: String {
        switch self {
        case let .invalidConfiguration(reason): "invalid training configuration: \(reason)"
        case let .invalidModel(reason): "model cannot be trained: \(reason)"
        case let .batchTooSmall(pairs): "a training step needs at least 2 pairs (in-batch negatives), got \(pairs)"
        case let .emptyText(index): "text \(index) of the batch has no tokens"
        case let .tokenOutOfRange(text, position, token, vocabSize):
            "token id \(token) at position \(position) of text \(text) is outside the vocabulary 0..<\(vocabSize)"
        case let .textTooLong(text, length, limit): "text \(text) has \(length) tokens; at most \(limit) are supported"
        case let .adapterMismatch(reason): "LoRA adapter does not fit: \(reason)"
        case let .adapterFile(error): "\(error)"
        }
    }
}
