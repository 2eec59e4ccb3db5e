/// Reading a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) into a `TokenizerSpec`.
extension TokenizerSpec {
    /// From HF tokenizer.json (+ tokenizer_config.json if present): vocab, merges (both the "a b" string
    /// form and the [a, b] array form), added_tokens (special -> type 3, else 4), the pre-tokenizer family
    /// recognised from the pre_tokenizer config, BOS/EOS and add_bos/add_eos.
    ///
    /// Unsupported (rejected with an error naming the setting): models other than BPE, normalizers,
    /// pre-tokenizer configs other than the four families, BPE dropout, byte fallback, subword
    /// prefixes/suffixes, added tokens with lstrip/rstrip/single_word, and `ignore_merges` values other
    /// than the family's own (true only for llama-bpe).
    public static func fromHuggingFace(
        tokenizerJSON: [UInt8], tokenizerConfigJSON: [UInt8]?
    ) throws(TokenizerError) -> TokenizerSpec {
        let file = "tokenizer.json"
        let root = try JSONParser.parse(tokenizerJSON, file: file)
        guard case .object = root else { throw .invalidField(file: file, path: "(root)", reason: "expected an object") }
        guard let model = root["model"], case .object = model else {
            throw .invalidField(file: file, path: "model", reason: "expected an object")
        }
        try checkModelOptions(model)
        if let normalizer = root["normalizer"], !normalizer.isNull {
            throw .unsupportedNormalizer(normalizer.compactDescription)
        }
        let family = try preTokenizerFamily(of: root["pre_tokenizer"] ?? .null)
        let ignoreMerges = model["ignore_merges"]?.boolValue ?? false
        guard ignoreMerges == (family == .llama3) else {
            throw .unsupportedOption("model.ignore_merges=\(ignoreMerges) with the \(family.name) pre-tokenizer")
        }
        if let decoder = root["decoder"], !decoder.isNull, decoder["type"]?.stringValue != "ByteLevel" {
            throw .unsupportedOption("decoder \(decoder.compactDescription) (expected ByteLevel)")
        }

        let (tokens, tokenTypes) = try readVocabulary(model: model, addedTokens: root["added_tokens"], file: file)
        let merges = try readMerges(model["merges"], file: file)
        var idForToken: [String: Int32] = [:]
        for (id, token) in tokens.enumerated() { idForToken[token] = Int32(id) }

        let config = try tokenizerConfigJSON.map { bytes throws(TokenizerError) in
            try JSONParser.parse(bytes, file: "tokenizer_config.json")
        }
        let template = try specialTokensFromTemplate(root["post_processor"] ?? .null)
        let bos = try specialTokenID(
            named: "bos_token", config: config, templateToken: template.first, idForToken: idForToken)
        let eos = try specialTokenID(
            named: "eos_token", config: config, templateToken: template.last, idForToken: idForToken)
        let addBOS = config?["add_bos_token"]?.boolValue ?? (template.first != nil)
        let addEOS = config?["add_eos_token"]?.boolValue ?? (template.last != nil)

        return TokenizerSpec(
            tokens: tokens, merges: merges, tokenTypes: tokenTypes, preTokenizer: family.name,
            bosTokenID: bos, eosTokenID: eos, addBOS: addBOS, addEOS: addEOS)
    }

    private static func checkModelOptions(_ model: JSONValue) throws(TokenizerError) {
        if let type = model["type"]?.stringValue, type != "BPE" { throw .unsupportedModel(type) }
        if let dropout = model["dropout"], !dropout.isNull { throw .unsupportedOption("model.dropout (BPE dropout)") }
        if model["byte_fallback"]?.boolValue == true { throw .unsupportedOption("model.byte_fallback") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let value = model[key]?.stringValue, !value.isEmpty { throw .unsupportedOption("model.\(key)") }
        }
    }

    private static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    private static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Recognises the four supported pre_tokenizer configurations (as SmolLM2, Llama 3, Qwen2 and GPT-2 ship them).
    private static func preTokenizerFamily(of config: JSONValue) throws(TokenizerError) -> PreTokenizerFamily {
        let unsupported = TokenizerError.unsupportedPreTokenizer(config.compactDescription)
        func isByteLevel(_ step: JSONValue, useRegex: Bool) -> Bool {
            step["type"]?.stringValue == "ByteLevel" && step["add_prefix_space"]?.boolValue != true
                && (step["use_regex"]?.boolValue ?? true) == useRegex
        }
        if isByteLevel(config, useRegex: true) { return .gpt2 }
        guard config["type"]?.stringValue == "Sequence", case .array(let steps)? = config["pretokenizers"],
            steps.count == 2
        else { throw unsupported }
        let first = steps[0]
        if first["type"]?.stringValue == "Digits", first["individual_digits"]?.boolValue == true,
            isByteLevel(steps[1], useRegex: true)
        {
            return .smollm
        }
        guard first["type"]?.stringValue == "Split", first["behavior"]?.stringValue == "Isolated",
            first["invert"]?.boolValue != true, isByteLevel(steps[1], useRegex: false),
            let pattern = first["pattern"]?["Regex"]?.stringValue
        else { throw unsupported }
        switch pattern {
        case llama3Pattern: return .llama3
        case qwen2Pattern: return .qwen2
        default: throw unsupported
        }
    }

    /// Tokens in id order from model.vocab and added_tokens, with GGUF token types.
    private static func readVocabulary(
        model: JSONValue, addedTokens: JSONValue?, file: String
    ) throws(TokenizerError) -> (tokens: [String], types: [Int32]) {
        guard case .object(let vocab)? = model["vocab"] else {
            throw .invalidField(file: file, path: "model.vocab", reason: "expected an object of token -> id")
        }
        var entries: [(id: Int, token: String, type: Int32)] = []
        entries.reserveCapacity(vocab.count)
        for (token, idValue) in vocab {
            guard let id = idValue.intValue, id >= 0, id < Int(Int32.max) else {
                throw .invalidField(file: file, path: "model.vocab[\(token)]", reason: "expected a non-negative integer id")
            }
            entries.append((id, token, normalTokenType))
        }
        if let addedTokens, !addedTokens.isNull {
            guard case .array(let added) = addedTokens else {
                throw .invalidField(file: file, path: "added_tokens", reason: "expected an array")
            }
            for (index, item) in added.enumerated() {
                guard let id = item["id"]?.intValue, id >= 0, id < Int(Int32.max),
                    let content = item["content"]?.stringValue
                else {
                    throw .invalidField(
                        file: file, path: "added_tokens[\(index)]", reason: "expected an object with id and content")
                }
                // These change the text around a match; GGUF cannot express them either.
                for flag in ["lstrip", "rstrip", "single_word"] where item[flag]?.boolValue == true {
                    throw .unsupportedOption("added_tokens[\(index)] '\(content)' has \(flag)=true")
                }
                let special = item["special"]?.boolValue ?? false
                entries.append((id, content, special ? controlTokenType : userDefinedTokenType))
            }
        }
        guard let maximumID = entries.map(\.id).max() else { throw .emptyVocabulary }
        var tokens = [String?](repeating: nil, count: maximumID + 1)
        var types = [Int32](repeating: normalTokenType, count: maximumID + 1)
        for entry in entries {
            if let existing = tokens[entry.id], existing != entry.token {
                throw .conflictingToken(id: entry.id, first: existing, second: entry.token)
            }
            tokens[entry.id] = entry.token
            // An added token re-declares a vocab entry: its type wins (entries list added tokens last).
            types[entry.id] = entry.type
        }
        var resolved: [String] = []
        resolved.reserveCapacity(tokens.count)
        for (id, token) in tokens.enumerated() {
            guard let token else { throw .vocabularyGap(id: id) }
            resolved.append(token)
        }
        return (resolved, types)
    }

    /// Merges in priority order as "left right", from either the string or the [left, right] form.
    private static func readMerges(_ value: JSONValue?, file: String) throws(TokenizerError) -> [String] {
        guard case .array(let items)? = value else {
            throw .invalidField(file: file, path: "model.merges", reason: "expected an array")
        }
        var merges: [String] = []
        merges.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            switch item {
            case .string(let merge):
                merges.append(merge)
            case .array(let pair):
                guard pair.count == 2, let left = pair[0].stringValue, let right = pair[1].stringValue else {
                    throw .invalidField(
                        file: file, path: "model.merges[\(index)]", reason: "expected [left, right] strings")
                }
                merges.append(left + " " + right)
            default:
                throw .invalidField(
                    file: file, path: "model.merges[\(index)]", reason: "expected \"left right\" or [left, right]")
            }
        }
        return merges
    }

    /// Token names a TemplateProcessing post-processor puts before / after a single sequence.
    private static func specialTokensFromTemplate(
        _ postProcessor: JSONValue
    ) throws(TokenizerError) -> (first: String?, last: String?) {
        switch postProcessor["type"]?.stringValue {
        case nil, "ByteLevel":
            return (nil, nil)
        case "Sequence":
            guard case .array(let processors)? = postProcessor["processors"] else { return (nil, nil) }
            var result: (first: String?, last: String?) = (nil, nil)
            for processor in processors {
                let found = try specialTokensFromTemplate(processor)
                result = (found.first ?? result.first, found.last ?? result.last)
            }
            return result
        case "TemplateProcessing":
            guard case .array(let single)? = postProcessor["single"] else { return (nil, nil) }
            func specialTokenName(_ piece: JSONValue?) -> String? { piece?["SpecialToken"]?["id"]?.stringValue }
            return (specialTokenName(single.first), specialTokenName(single.last))
        case let other?:
            throw .unsupportedOption("post_processor type \(other)")
        }
    }

    /// The id of tokenizer_config's `bos_token` / `eos_token` (a string or {"content": ...}), else of the
    /// token the post-processor template adds.
    private static func specialTokenID(
        named name: String, config: JSONValue?, templateToken: String?, idForToken: [String: Int32]
    ) throws(TokenizerError) -> Int32? {
        let configured = config?[name]
        let content = configured?.stringValue ?? configured?["content"]?.stringValue ?? templateToken
        guard let content else { return nil }
        guard let id = idForToken[content] else { throw .unknownSpecialToken(name: name, content: content) }
        return id
    }
}
