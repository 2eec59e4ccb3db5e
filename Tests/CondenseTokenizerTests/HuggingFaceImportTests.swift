import Testing

@testable import CondenseTokenizer

/// A tiny tokenizer.json with replaceable parts.
private func tokenizerJSON(
    preTokenizer: String = #"{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}"#,
    normalizer: String = "null",
    postProcessor: String = "null",
    modelOptions: String = "",
    vocab: String = #"{"a":0,"b":1,"ab":2,"Ġ":3,"Ġab":4,"<s>":5}"#,
    merges: String = #"["a b",["Ġ","ab"]]"#,
    addedTokens: String = #"[{"id":5,"content":"<s>","special":true},{"id":6,"content":"[X]","special":false}]"#
) -> [UInt8] {
    Array(
        """
        {"version":"1.0","truncation":null,"padding":null,"added_tokens":\(addedTokens),
         "normalizer":\(normalizer),"pre_tokenizer":\(preTokenizer),"post_processor":\(postProcessor),
         "decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
         "model":{"type":"BPE","dropout":null,"unk_token":null,\(modelOptions)"vocab":\(vocab),"merges":\(merges)}}
        """.utf8)
}

private func importSpec(_ json: [UInt8], config: String? = nil) throws(TokenizerError) -> TokenizerSpec {
    try TokenizerSpec.fromHuggingFace(tokenizerJSON: json, tokenizerConfigJSON: config.map { Array($0.utf8) })
}

@Suite struct HuggingFaceImportTests {
    @Test func readsVocabularyMergesAndTypes() throws {
        let spec = try importSpec(tokenizerJSON())
        #expect(spec.tokens == ["a", "b", "ab", "Ġ", "Ġab", "<s>", "[X]"])
        #expect(spec.tokenTypes == [1, 1, 1, 1, 1, 3, 4])
        #expect(spec.merges == ["a b", "Ġ ab"])  // string and [left, right] forms
        #expect(spec.preTokenizer == "gpt2")
        #expect(spec.bosTokenID == nil && spec.eosTokenID == nil && !spec.addBOS && !spec.addEOS)
        let tokenizer = try Tokenizer(spec: spec)
        #expect(tokenizer.encode("ab ab<s>[X]") == [2, 4, 5, 6])
        #expect(tokenizer.decode([2, 4, 5, 6]) == "ab ab<s>[X]")
        // Bytes without a vocabulary entry are dropped, as HF does without an unk token.
        #expect(tokenizer.encode("abc") == [2])
    }

    @Test func recognisesTheFourFamilies() throws {
        for family in Fixtures.families {
            let spec = try TokenizerSpec.fromHuggingFace(tokenizerJSON: Fixtures.tokenizerJSON(family), tokenizerConfigJSON: nil)
            #expect(spec.preTokenizer == family)
        }
    }

    @Test func bosAndEOSFromTokenizerConfig() throws {
        let spec = try importSpec(
            tokenizerJSON(),
            config: #"{"bos_token":"<s>","eos_token":{"content":"<s>","lstrip":false},"add_bos_token":true}"#)
        #expect(spec.bosTokenID == 5 && spec.eosTokenID == 5)
        #expect(spec.addBOS && !spec.addEOS)
        let tokenizer = try Tokenizer(spec: spec)
        #expect(tokenizer.encode("ab") == [5, 2])
        #expect(tokenizer.encode("ab", addSpecialTokens: false) == [2])

        #expect(throws: TokenizerError.unknownSpecialToken(name: "eos_token", content: "</s>")) {
            try importSpec(tokenizerJSON(), config: #"{"eos_token":"</s>"}"#)
        }
    }

    @Test func bosFromTemplatePostProcessor() throws {
        let template = #"""
            {"type":"Sequence","processors":[{"type":"ByteLevel"},{"type":"TemplateProcessing",
             "single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
             "pair":[],"special_tokens":{}}]}
            """#
        let spec = try importSpec(tokenizerJSON(postProcessor: template))
        #expect(spec.bosTokenID == 5 && spec.addBOS)
        #expect(spec.eosTokenID == nil && !spec.addEOS)
        // tokenizer_config.json has the last word.
        let overridden = try importSpec(tokenizerJSON(postProcessor: template), config: #"{"add_bos_token":false}"#)
        #expect(!overridden.addBOS)
    }

    @Test func unsupportedConfigurationsAreNamed() throws {
        #expect(throws: TokenizerError.unsupportedModel("WordPiece")) {
            try importSpec(Array(#"{"model":{"type":"WordPiece","vocab":{"a":0}}}"#.utf8))
        }
        #expect(throws: TokenizerError.unsupportedNormalizer(#"{"type":"NFC"}"#)) {
            try importSpec(tokenizerJSON(normalizer: #"{"type":"NFC"}"#))
        }
        let metaspace = #"{"type":"Metaspace","replacement":"▁"}"#
        #expect(throws: TokenizerError.unsupportedPreTokenizer(#"{"type":"Metaspace","replacement":"▁"}"#)) {
            try importSpec(tokenizerJSON(preTokenizer: metaspace))
        }
        let prefixSpace = #"{"type":"ByteLevel","add_prefix_space":true,"use_regex":true}"#
        #expect(throws: TokenizerError.unsupportedPreTokenizer(prefixSpace)) {
            try importSpec(tokenizerJSON(preTokenizer: prefixSpace))
        }
        let otherRegex = #"""
            {"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\s+"},"behavior":"Isolated",
             "invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]}
            """#
        #expect(throws: TokenizerError.self) { try importSpec(tokenizerJSON(preTokenizer: otherRegex)) }
        #expect(throws: TokenizerError.unsupportedOption("model.ignore_merges=true with the gpt2 pre-tokenizer")) {
            try importSpec(tokenizerJSON(modelOptions: #""ignore_merges":true,"#))
        }
        #expect(throws: TokenizerError.unsupportedOption("model.byte_fallback")) {
            try importSpec(tokenizerJSON(modelOptions: #""byte_fallback":true,"#))
        }
        #expect(throws: TokenizerError.unsupportedOption("added_tokens[0] '<s>' has rstrip=true")) {
            try importSpec(tokenizerJSON(addedTokens: #"[{"id":5,"content":"<s>","special":true,"rstrip":true}]"#))
        }
        #expect(throws: TokenizerError.unsupportedOption("model.continuing_subword_prefix")) {
            try importSpec(tokenizerJSON(modelOptions: ###""continuing_subword_prefix":"##","###))
        }
    }

    @Test func inconsistentVocabulariesAreRejected() throws {
        #expect(throws: TokenizerError.vocabularyGap(id: 1)) {
            try importSpec(tokenizerJSON(vocab: #"{"a":0,"b":2}"#, merges: "[]", addedTokens: "[]"))
        }
        #expect(throws: TokenizerError.conflictingToken(id: 0, first: "a", second: "<s>")) {
            try importSpec(tokenizerJSON(vocab: #"{"a":0}"#, merges: "[]", addedTokens: #"[{"id":0,"content":"<s>"}]"#))
        }
        #expect(throws: TokenizerError.emptyVocabulary) {
            try importSpec(tokenizerJSON(vocab: "{}", merges: "[]", addedTokens: "[]"))
        }
        #expect(throws: TokenizerError.invalidField(file: "tokenizer.json", path: "model.vocab[a]", reason: "expected a non-negative integer id")) {
            try importSpec(tokenizerJSON(vocab: #"{"a":-1}"#))
        }
        #expect(throws: TokenizerError.invalidField(file: "tokenizer.json", path: "model.merges[0]", reason: "expected [left, right] strings")) {
            try importSpec(tokenizerJSON(merges: #"[["a"]]"#))
        }
    }

    @Test func malformedJSONIsReportedWithItsOffset() throws {
        #expect(throws: TokenizerError.malformedJSON(file: "tokenizer.json", offset: 1, reason: "unexpected end of input")) {
            try importSpec(Array("[".utf8))
        }
        #expect(throws: TokenizerError.malformedJSON(file: "tokenizer.json", offset: 0, reason: "unexpected end of input")) {
            try importSpec([])
        }
        #expect(throws: TokenizerError.invalidField(file: "tokenizer.json", path: "(root)", reason: "expected an object")) {
            try importSpec(Array("[]".utf8))
        }
        #expect(throws: TokenizerError.invalidField(file: "tokenizer.json", path: "model", reason: "expected an object")) {
            try importSpec(Array(#"{"version":"1.0"}"#.utf8))
        }
        #expect(throws: TokenizerError.self) { try importSpec(Array(tokenizerJSON().dropLast(3))) }
        #expect(throws: TokenizerError.malformedJSON(file: "tokenizer_config.json", offset: 2, reason: "expected a member name")) {
            try importSpec(tokenizerJSON(), config: "{ ]")
        }
    }
}

@Suite struct JSONParserTests {
    @Test func parsesValuesAndEscapes() throws {
        let value = try JSONParser.parse(
            Array(#" {"s":"a\"\\\/\n\t\u00e9\ud83d\ude00","n":[0,-12,3.5e2],"t":true,"f":false,"z":null} "#.utf8),
            file: "test")
        #expect(value["s"] == .string("a\"\\/\n\té😀"))
        #expect(value["n"] == .array([.number("0"), .number("-12"), .number("3.5e2")]))
        if case .array(let numbers)? = value["n"] { #expect(numbers[1].intValue == -12) }
        #expect(value["t"] == .bool(true) && value["f"] == .bool(false) && value["z"] == .null)
    }

    @Test func rejectsInvalidInput() {
        let cases = [
            #"{"a":1,}"#, #"[1 2]"#, #""\ud800""#, #""\x""#, "\"a\u{01}\"", "01", "-", "1.", "tru", "{} x",
            String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000),
        ]
        for text in cases {
            #expect(throws: TokenizerError.self, "\(text.prefix(20))") { try JSONParser.parse(Array(text.utf8), file: "test") }
        }
        #expect(throws: TokenizerError.malformedJSON(file: "test", offset: 4, reason: "string is not valid UTF-8")) {
            try JSONParser.parse([0x22, 0xC3, 0x28, 0x22], file: "test")
        }
    }
}
