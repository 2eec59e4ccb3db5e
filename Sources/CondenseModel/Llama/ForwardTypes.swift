import CondenseTensor

public struct ForwardOptions: Sendable {
    /// Also return the last layer's attention probabilities (see `ForwardOutput.lastLayerAttention`).
    public var returnLastLayerAttention = false

    public init(returnLastLayerAttention: Bool = false) {
        self.returnLastLayerAttention = returnLastLayerAttention
    }
}

public struct ForwardOutput: Sendable {
    /// Final hidden states of all tokens of the batch, final RMSNorm applied: [totalTokens x hidden].
    public var hidden: Matrix
    /// Sequence `i` occupies rows `offsets[i] ..< offsets[i + 1]` of `hidden` (`sequenceCount + 1` entries).
    public var offsets: [Int]
    /// Per sequence of length L, a [heads·L x L] matrix: row `h·L + i` holds head `h`'s attention
    /// probabilities of query position `i` over key positions `0..<L` (zero above the diagonal: causal).
    /// Present only when `ForwardOptions.returnLastLayerAttention` was set.
    public var lastLayerAttention: [Matrix]?

    public var sequenceCount: Int { offsets.count - 1 }

    public func length(of sequence: Int) -> Int { offsets[sequence + 1] - offsets[sequence] }

    /// Hidden states of one sequence, row-major [length x hidden], without copying.
    public func states(of sequence: Int) -> ArraySlice<Float> {
        hidden.data[(offsets[sequence] * hidden.cols)..<(offsets[sequence + 1] * hidden.cols)]
    }
}

public enum ForwardError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A token id outside `0..<vocabSize`.
    case tokenOutOfRange(sequence: Int, position: Int, token: Int32, vocabSize: Int)
    /// A sequence longer than the positions the model's rotary table covers.
    case sequenceTooLong(sequence: Int, length: Int, limit: Int)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(sequence, position, token, vocabSize):
            "token id \(token) at position \(position) of sequence \(sequence) is outside the vocabulary 0..<\(vocabSize)"
        case let .sequenceTooLong(sequence, length, limit):
            "sequence \(sequence) has \(length) tokens; the model supports at most \(limit)"
        }
    }
}

public enum LlamaModelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A tensor whose shape does not match the configuration.
    case shapeMismatch(tensor: String, expected: String, actual: String)
    /// A configuration value that cannot describe a working model.
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case let .shapeMismatch(tensor, expected, actual):
            "weight \(tensor) has shape \(actual), expected \(expected)"
        case let .invalidConfiguration(reason):
            "invalid model configuration: \(reason)"
        }
    }
}
