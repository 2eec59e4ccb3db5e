/// Errors of an embedding request. Per-request errors are thrown (the whole call fails);
/// per-item errors come back in that item's `Result` while the other items succeed.
public enum EmbeddingError: Error, Equatable, Sendable, CustomStringConvertible {
    // MARK: Per request
    /// A prompt that is neither a built-in name nor a template with `{text}` exactly once.
    case invalidPromptTemplate(template: String, placeholderCount: Int)
    /// `dimensions` outside 1...model dimensions.
    case dimensionsOutOfRange(requested: Int, available: Int)
    /// `maxTokens` below 1.
    case invalidMaxTokens(Int)
    /// `eos` pooling with a tokenizer that declares no EOS token.
    case missingEOSToken
    /// The model file could not be loaded.
    case modelUnavailable(path: String, reason: String)

    // MARK: Per item
    /// The text is empty or only whitespace.
    case emptyText
    /// The text's bytes are not valid UTF-8.
    case invalidUTF8
    /// The raw text has more tokens than `maxTokens` and the policy is `reject`.
    case textTooLong(tokens: Int, limit: Int)
    /// The prompted text is longer than the model's position limit.
    case exceedsModelLimit(tokens: Int, limit: Int)
    /// The model failed on this item's batch.
    case forwardFailed(String)

    /// Whether the error concerns one item only (the others of the call are unaffected).
    public var isItemError: Bool {
        switch self {
        case .emptyText, .invalidUTF8, .textTooLong, .exceedsModelLimit, .forwardFailed: true
        case .invalidPromptTemplate, .dimensionsOutOfRange, .invalidMaxTokens, .missingEOSToken, .modelUnavailable: false
        }
    }

    public var description: String {
        switch self {
        case let .invalidPromptTemplate(template, count):
            "prompt \"\(template)\" is not a named prompt and not a template containing {text} exactly once "
                + "(it contains {text} \(count) times); named prompts: "
                + PromptTemplate.namedPromptNames.joined(separator: ", ")
        case let .dimensionsOutOfRange(requested, available):
            "dimensions \(requested) is out of range: the model gives 1...\(available)"
        case let .invalidMaxTokens(value):
            "max tokens must be at least 1, got \(value)"
        case .missingEOSToken:
            "eos pooling needs an EOS token, but the model's tokenizer declares none"
        case let .modelUnavailable(path, reason):
            "cannot load model \(path): \(reason)"
        case .emptyText:
            "text is empty"
        case .invalidUTF8:
            "text is not valid UTF-8"
        case let .textTooLong(tokens, limit):
            "text has \(tokens) tokens, limit is \(limit) (max_tokens); use truncation to cut it"
        case let .exceedsModelLimit(tokens, limit):
            "prompted text has \(tokens) tokens, the model accepts at most \(limit)"
        case let .forwardFailed(reason):
            "model failed: \(reason)"
        }
    }
}
