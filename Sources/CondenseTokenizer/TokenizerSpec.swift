/// Everything a byte-level BPE tokenizer needs, as declared by the model file
/// (GGUF `tokenizer.ggml.*` metadata or HF `tokenizer.json` + `tokenizer_config.json`).
public struct TokenizerSpec: Sendable, Equatable {
    /// Token strings in id order, in GPT-2 byte-level form (e.g. "Ġthe").
    public var tokens: [String]
    /// Merge rules in priority order, each "left right".
    public var merges: [String]
    /// Per-token type as GGUF defines it: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    /// Control and user-defined tokens are matched verbatim in input text before BPE.
    public var tokenTypes: [Int32]
    /// Pre-tokenizer family: "smollm", "llama-bpe", "qwen2", "gpt2", ... (GGUF `tokenizer.ggml.pre`).
    public var preTokenizer: String
    public var bosTokenID: Int32?
    public var eosTokenID: Int32?
    public var addBOS: Bool
    public var addEOS: Bool

    public init(
        tokens: [String], merges: [String], tokenTypes: [Int32], preTokenizer: String,
        bosTokenID: Int32?, eosTokenID: Int32?, addBOS: Bool, addEOS: Bool
    ) {
        self.tokens = tokens
        self.merges = merges
        self.tokenTypes = tokenTypes
        self.preTokenizer = preTokenizer
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.addBOS = addBOS
        self.addEOS = addEOS
    }
}

extension TokenizerSpec {
    /// GGUF token types, as `tokenTypes` stores them.
    static let normalTokenType: Int32 = 1
    static let controlTokenType: Int32 = 3
    static let userDefinedTokenType: Int32 = 4
}
