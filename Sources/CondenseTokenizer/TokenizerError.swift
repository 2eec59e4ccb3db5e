/// Why a tokenizer could not be built from the model's data.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    /// `tokenizer.json` / `tokenizer_config.json` is not valid JSON.
    case malformedJSON(file: String, offset: Int, reason: String)
    /// A required field is absent or has the wrong JSON type.
    case invalidField(file: String, path: String, reason: String)
    /// The tokenizer model is not byte-level BPE (e.g. "WordPiece", "Unigram").
    case unsupportedModel(String)
    /// A tokenizer.json option this byte-level BPE implementation does not reproduce.
    case unsupportedOption(String)
    /// A pre-tokenizer configuration or family name that is not one of: smollm, llama-bpe, qwen2, gpt2.
    case unsupportedPreTokenizer(String)
    /// A normalizer other than none: its effect on ids would be silently missing.
    case unsupportedNormalizer(String)
    case emptyVocabulary
    /// Token ids must cover 0..<count without holes.
    case vocabularyGap(id: Int)
    /// Two different strings claim the same id (vocab vs added_tokens).
    case conflictingToken(id: Int, first: String, second: String)
    case tokenTypeCountMismatch(tokens: Int, tokenTypes: Int)
    /// A merge rule that is not "left right".
    case malformedMerge(String)
    /// A merge rule whose parts or whose concatenation are not in the vocabulary.
    case mergeReferencesUnknownToken(merge: String, token: String)
    /// A BOS/EOS id outside the vocabulary.
    case specialTokenIDOutOfRange(name: String, id: Int32, vocabularySize: Int)
    /// tokenizer_config.json names a BOS/EOS token text that is not in the vocabulary.
    case unknownSpecialToken(name: String, content: String)

    public var description: String {
        switch self {
        case .malformedJSON(let file, let offset, let reason):
            return "\(file): malformed JSON at byte \(offset): \(reason)"
        case .invalidField(let file, let path, let reason):
            return "\(file): field '\(path)': \(reason)"
        case .unsupportedModel(let type):
            return "unsupported tokenizer model '\(type)': only byte-level BPE is supported"
        case .unsupportedOption(let option):
            return "unsupported tokenizer option: \(option)"
        case .unsupportedPreTokenizer(let config):
            return "unsupported pre-tokenizer \(config); supported: smollm (Digits(individual) + ByteLevel), "
                + "llama-bpe (Split llama3 regex + ByteLevel), qwen2 (Split qwen2 regex + ByteLevel), gpt2 (ByteLevel)"
        case .unsupportedNormalizer(let config):
            return "unsupported normalizer \(config); only tokenizers without a normalizer are supported"
        case .emptyVocabulary:
            return "the vocabulary is empty"
        case .vocabularyGap(let id):
            return "the vocabulary has no token with id \(id) (ids must be contiguous from 0)"
        case .conflictingToken(let id, let first, let second):
            return "token id \(id) is claimed by both '\(first)' and '\(second)'"
        case .tokenTypeCountMismatch(let tokens, let tokenTypes):
            return "\(tokens) tokens but \(tokenTypes) token types"
        case .malformedMerge(let merge):
            return "malformed merge rule '\(merge)': expected 'left right'"
        case .mergeReferencesUnknownToken(let merge, let token):
            return "merge rule '\(merge)' needs token '\(token)', which is not in the vocabulary"
        case .specialTokenIDOutOfRange(let name, let id, let vocabularySize):
            return "\(name) token id \(id) is outside the vocabulary (size \(vocabularySize))"
        case .unknownSpecialToken(let name, let content):
            return "\(name) token '\(content)' is not in the vocabulary"
        }
    }
}
