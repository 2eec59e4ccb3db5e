/// Why text generation, its chat template or its output file failed.
public enum GenerationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Generation needs at least one prompt token.
    case emptyPrompt
    case forward(ForwardError)
    /// The model file declares no chat template (e.g. a base model rather than an instruct model).
    case missingChatTemplate(path: String)
    /// A chat template of a family the renderer does not know; carries the template's opening.
    case unsupportedChatTemplate(excerpt: String)
    /// A token the chat template needs is not a single special token of the vocabulary.
    case missingSpecialToken(String)
    case unreadableModel(ModelLoadError)
    /// A pairs output file or its progress file cannot be read, written, or resumed.
    case outputFile(path: String, detail: String)

    public var description: String {
        switch self {
        case .emptyPrompt:
            "the prompt has no tokens"
        case .forward(let error):
            "\(error)"
        case .missingChatTemplate(let path):
            "\(path) has no chat template (tokenizer.chat_template / chat_template): an instruct model is needed"
        case .unsupportedChatTemplate(let excerpt):
            "unsupported chat template (known: ChatML with <|im_start|>, Llama 3 with <|start_header_id|>): \(excerpt)"
        case .missingSpecialToken(let token):
            "the vocabulary has no special token \(token), which the chat template uses"
        case .unreadableModel(let error):
            "\(error)"
        case .outputFile(let path, let detail):
            "\(path): \(detail)"
        }
    }
}
