/// Failures of the evaluation math and of the dataset readers. Each case names the offending input.
public enum EvaluationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Two sequences that must pair up element by element have different lengths.
    case lengthMismatch(what: String, first: Int, second: Int)
    /// Too few items for the computation (e.g. fewer points than clusters).
    case tooFewItems(what: String, count: Int, required: Int)
    /// A parameter outside its valid range.
    case invalidParameter(name: String, value: String, expected: String)
    /// A correlation over a sequence whose values are all equal (undefined, as in scipy: NaN).
    case constantInput(what: String)
    /// A value that is NaN or infinite.
    case nonFiniteValue(what: String, index: Int)
    /// A dataset file that cannot be read.
    case unreadableFile(path: String, reason: String)
    /// A malformed line of a dataset file (1-based line number).
    case malformedLine(path: String, line: Int, reason: String)
    /// A dataset file without any items.
    case emptyDataset(path: String)
    /// A text that could not be embedded (0-based item index).
    case embeddingFailed(item: Int, reason: String)

    public var description: String {
        switch self {
        case let .lengthMismatch(what, first, second):
            "\(what): lengths differ (\(first) vs \(second))"
        case let .tooFewItems(what, count, required):
            "\(what): \(count) items, at least \(required) required"
        case let .invalidParameter(name, value, expected):
            "invalid \(name) \(value): expected \(expected)"
        case let .constantInput(what):
            "\(what): all values are equal, the correlation is undefined"
        case let .nonFiniteValue(what, index):
            "\(what): value \(index) is not finite"
        case let .unreadableFile(path, reason):
            "cannot read \(path): \(reason)"
        case let .malformedLine(path, line, reason):
            "\(path) line \(line): \(reason)"
        case let .emptyDataset(path):
            "\(path) holds no items"
        case let .embeddingFailed(item, reason):
            "text \(item) could not be embedded: \(reason)"
        }
    }
}
