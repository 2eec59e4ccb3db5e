import CondenseTokenizer
import Foundation

/// The conversation format of an instruct model, recognised from the Jinja chat template in its model
/// file (`tokenizer.chat_template` in GGUF, `chat_template` in tokenizer_config.json). Not a Jinja engine:
/// the template's family is recognised by its markers and rendered the way the family's templates do for
/// one optional system message, one user message and the assistant generation prompt.
public struct ChatTemplate: Sendable, Equatable {
    public enum Family: String, Sendable {
        /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen2/2.5).
        case chatML
        /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` (Llama 3.x).
        case llama3
    }

    public let family: Family
    /// The template text as found in the model file.
    public let source: String
    /// The system message a ChatML template inserts when the conversation has none (SmolLM2: "You are a
    /// helpful AI assistant named SmolLM, ..."), so a prompt without one matches what the model was tuned on.
    public let defaultSystemPrompt: String?

    /// Recognises the family of `source`; fails naming the template when it is none of the known ones.
    public init(_ source: String) throws(GenerationError) {
        self.source = source
        if source.contains("<|im_start|>") {
            family = .chatML
            defaultSystemPrompt = Self.chatMLDefaultSystemPrompt(in: source)
        } else if source.contains("<|start_header_id|>") {
            family = .llama3
            defaultSystemPrompt = nil
        } else {
            let opening = source.prefix(120)
            throw .unsupportedChatTemplate(excerpt: "'\(opening)\(opening.count < source.count ? "…" : "")'")
        }
    }

    /// Special tokens the family's format is made of (each must be a single token of the vocabulary).
    public var markers: [String] {
        switch family {
        case .chatML: ["<|im_start|>", "<|im_end|>"]
        case .llama3: ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        }
    }

    /// The token that ends a message, where the assistant's answer stops.
    public var endOfTurn: String {
        switch family {
        case .chatML: "<|im_end|>"
        case .llama3: "<|eot_id|>"
        }
    }

    /// A system message (nil: the template's default, if any) and a user message, followed by the assistant
    /// generation prompt. `bosToken` is written first when the template itself emits `bos_token` (Llama 3).
    public func render(system: String?, user: String, bosToken: String? = nil) -> String {
        var text = source.contains("bos_token") ? bosToken ?? "" : ""
        switch family {
        case .chatML:
            if let system = system ?? defaultSystemPrompt {
                text += "<|im_start|>system\n\(system)<|im_end|>\n"
            }
            text += "<|im_start|>user\n\(user)<|im_end|>\n<|im_start|>assistant\n"
        case .llama3:
            // Llama 3 templates trim every message's content.
            func message(_ role: String, _ content: String) -> String {
                "<|start_header_id|>\(role)<|end_header_id|>\n\n\(content.trimmingCharacters(in: .whitespacesAndNewlines))<|eot_id|>"
            }
            if let system { text += message("system", system) }
            text += message("user", user) + "<|start_header_id|>assistant<|end_header_id|>\n\n"
        }
        return text
    }

    /// Prompt token ids for the conversation, encoded as HF `apply_chat_template(tokenize=True)` does: the
    /// rendered text with its special tokens as single ids and no BOS/EOS added beyond what the template writes.
    public func promptTokens(system: String?, user: String, tokenizer: Tokenizer) throws(GenerationError) -> [Int32] {
        for marker in markers { _ = try Self.singleToken(marker, tokenizer) }
        let bos = tokenizer.bosTokenID.flatMap(tokenizer.token(for:))
        return tokenizer.encode(render(system: system, user: user, bosToken: bos), addSpecialTokens: false)
    }

    /// Tokens that end the assistant's answer: the end-of-turn marker and the tokenizer's EOS.
    public func stopTokens(tokenizer: Tokenizer) throws(GenerationError) -> Set<Int32> {
        var tokens: Set<Int32> = [try Self.singleToken(endOfTurn, tokenizer)]
        if let eos = tokenizer.eosTokenID { tokens.insert(eos) }
        return tokens
    }

    private static func singleToken(_ text: String, _ tokenizer: Tokenizer) throws(GenerationError) -> Int32 {
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        guard ids.count == 1, let id = ids.first else { throw .missingSpecialToken(text) }
        return id
    }

    /// The literal system message of a `'<|im_start|>system\n...<|im_end|>\n'` string in the template:
    /// the first such string whose content is plain text (not an expression like `+ messages[0]...`).
    static func chatMLDefaultSystemPrompt(in source: String) -> String? {
        // JSON-decoded templates hold a real newline; a template written as a Jinja literal may hold `\n`.
        for opening in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
            var searchStart = source.startIndex
            while let start = source.range(of: opening, range: searchStart..<source.endIndex) {
                searchStart = start.upperBound
                guard let end = source.range(of: "<|im_end|>", range: start.upperBound..<source.endIndex) else { break }
                let content = source[start.upperBound..<end.lowerBound]
                guard !content.isEmpty, !content.contains(where: { "'\"{}+".contains($0) }) else { continue }
                return content.replacingOccurrences(of: "\\n", with: "\n")
            }
        }
        return nil
    }
}

extension ChatTemplate {
    /// The chat template of a model: `tokenizer.chat_template` of a .gguf file, or `chat_template` of a Hugging
    /// Face directory's tokenizer_config.json (a string, or a list of named templates: the "default" one).
    public static func load(modelPath: String) throws(GenerationError) -> ChatTemplate {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: modelPath, isDirectory: &isDirectory) else {
            throw .unreadableModel(.fileNotFound(path: modelPath))
        }
        let source: String?
        do throws(ModelLoadError) {
            source = isDirectory.boolValue
                ? try huggingFaceTemplate(directory: modelPath)
                : try GGUFFile(path: modelPath).string("tokenizer.chat_template")
        } catch {
            throw .unreadableModel(error)
        }
        guard let source, !source.isEmpty else { throw .missingChatTemplate(path: modelPath) }
        return try ChatTemplate(source)
    }

    private static func huggingFaceTemplate(directory: String) throws(ModelLoadError) -> String? {
        let path = HuggingFaceDirectory.join(directory, ModelLoader.tokenizerConfigFile)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let data = try HuggingFaceDirectory.readFile(path)
        guard let config = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw .corrupted(path: path, detail: "not a JSON object")
        }
        switch config["chat_template"] {
        case let template as String:
            return template
        case let named as [[String: Any]]:
            return named.first { $0["name"] as? String == "default" }?["template"] as? String
        default:
            return nil
        }
    }
}
