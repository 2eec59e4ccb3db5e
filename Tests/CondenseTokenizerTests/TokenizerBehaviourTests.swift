import Testing

@testable import CondenseTokenizer

@Suite struct TokenizerBehaviourTests {
    @Test func specialTokensInTextMapToTheirSingleID() throws {
        let tokenizer = try Fixtures.tokenizer("smollm")
        let imStart = try #require(tokenizer.encode("<|im_start|>").first)
        #expect(tokenizer.encode("<|im_start|>") == [1])
        #expect(imStart == 1)
        #expect(tokenizer.encode("<|im_end|>") == [2])
        #expect(tokenizer.encode("<|endoftext|>") == [0])
        // A user-defined (non-special) added token is matched verbatim too.
        #expect(tokenizer.encode("[NOTE]") == [1024])
        let chat = tokenizer.encode("<|im_start|>user\nHi<|im_end|>")
        #expect(chat.first == 1)
        #expect(chat.last == 2)
        #expect(chat.filter { $0 <= 2 }.count == 2)
        // Near misses are ordinary text.
        #expect(!tokenizer.encode("<|im_start").contains(1))
    }

    @Test func emptyAndSpecialOnlyText() throws {
        let tokenizer = try Fixtures.tokenizer("llama-bpe")
        #expect(tokenizer.encode("") == [])
        #expect(tokenizer.decode([]) == "")
        #expect(tokenizer.encode("<|im_end|><|im_end|>") == [2, 2])
    }

    @Test func ignoreMergesTakesWholeVocabularyWords() throws {
        // "Ġzqxjv" is in the llama-bpe fixture's vocabulary but no merges build it.
        let llama = try Fixtures.tokenizer("llama-bpe")
        let word = try #require(llama.encode(" zqxjv").first)
        #expect(llama.encode(" zqxjv").count == 1)
        #expect(llama.token(for: word) == "Ġzqxjv")
        #expect(try Fixtures.tokenizer("gpt2").encode(" zqxjv").count > 1)
    }

    @Test func decodeReplacesInvalidUTF8AndSkipsUnknownIDs() throws {
        let tokenizer = try Fixtures.tokenizer("gpt2")
        let ids = tokenizer.encode("𓀀")
        #expect(ids.count == 4)  // no "𓀀" token in the small vocabulary: one token per byte
        #expect(tokenizer.decode(Array(ids.prefix(1))) == "\u{FFFD}")
        #expect(tokenizer.decode(Array(ids.prefix(2)) + tokenizer.encode("a")) == "\u{FFFD}a")
        #expect(tokenizer.decode([-1, 99_999] + tokenizer.encode("ok")) == "ok")
        // Per-token bytes: the four tokens of "𓀀" are its four UTF-8 bytes.
        #expect(ids.flatMap { tokenizer.bytes(of: $0) } == Array("𓀀".utf8))
        #expect(tokenizer.bytes(of: ids[0]) == [0xF0])
        #expect(tokenizer.bytes(of: 1) == Array("<|im_start|>".utf8))
        #expect(tokenizer.bytes(of: -1) == [])
    }

    @Test func tokenLookup() throws {
        let tokenizer = try Fixtures.tokenizer("smollm")
        #expect(tokenizer.vocabularySize == 1025)
        #expect(tokenizer.token(for: 1) == "<|im_start|>")
        #expect(tokenizer.token(for: -1) == nil)
        #expect(tokenizer.token(for: 1025) == nil)
        let space = try #require(tokenizer.encode(" ").first)
        #expect(tokenizer.token(for: space) == "Ġ")
    }

    @Test func addSpecialTokensFollowsTheSpec() throws {
        var spec = try TokenizerSpec.fromHuggingFace(tokenizerJSON: Fixtures.tokenizerJSON("smollm"), tokenizerConfigJSON: nil)
        #expect(spec.addBOS == false && spec.addEOS == false)
        spec.bosTokenID = 1
        spec.eosTokenID = 2
        spec.addBOS = true
        spec.addEOS = true
        let tokenizer = try Tokenizer(spec: spec)
        let plain = tokenizer.encode("hi", addSpecialTokens: false)
        #expect(tokenizer.encode("hi") == [1] + plain + [2])
        #expect(tokenizer.bosTokenID == 1)
        #expect(tokenizer.eosTokenID == 2)
    }

    @Test func concurrentEncodingSharesOneTokenizer() async throws {
        let tokenizer = try Fixtures.tokenizer("smollm")
        let corpus = try Fixtures.expectedIDs().corpus.filter { $0.count < 1000 }
        let serial = corpus.map { tokenizer.encode($0) }
        let concurrent = await withTaskGroup(of: (Int, [Int32]).self) { group in
            for (index, text) in corpus.enumerated() {
                group.addTask { (index, tokenizer.encode(text)) }
            }
            var results = [[Int32]](repeating: [], count: corpus.count)
            for await (index, ids) in group { results[index] = ids }
            return results
        }
        #expect(concurrent == serial)
    }

    @Test func spacesBeforeDigitsFollowTheFamily() throws {
        // SmolLM isolates digits before the regex, so the space stays alone; GPT-2 keeps " 1".
        let smollm = try Fixtures.tokenizer("smollm")
        let gpt2 = try Fixtures.tokenizer("gpt2")
        let smollmTokens = smollm.encode("a 12").compactMap { smollm.token(for: $0) }
        #expect(smollmTokens == ["a", "Ġ", "1", "2"])
        #expect(gpt2.encode("a 12").compactMap { gpt2.token(for: $0) }.contains { $0.hasPrefix("Ġ1") })
    }
}

@Suite struct TokenizerInitErrorTests {
    private func spec(_ family: String = "gpt2") throws -> TokenizerSpec {
        try TokenizerSpec.fromHuggingFace(tokenizerJSON: Fixtures.tokenizerJSON("gpt2"), tokenizerConfigJSON: nil)
            .with { $0.preTokenizer = family }
    }

    @Test func unknownPreTokenizerIsNamed() throws {
        #expect(throws: TokenizerError.unsupportedPreTokenizer("'falcon'")) { try Tokenizer(spec: self.spec("falcon")) }
        let message = TokenizerError.unsupportedPreTokenizer("'falcon'").description
        #expect(message.contains("falcon") && message.contains("smollm"))
    }

    @Test func supportedFamilyNames() throws {
        for family in ["smollm", "llama-bpe", "qwen2", "gpt2"] {
            #expect(throws: Never.self) { try Tokenizer(spec: self.spec(family)) }
        }
    }

    @Test func mergeWithUnknownTokenIsRejected() throws {
        let spec = try spec().with { $0.merges.append("Ġ nonexistent-token") }
        #expect(throws: TokenizerError.mergeReferencesUnknownToken(merge: "Ġ nonexistent-token", token: "nonexistent-token")) {
            try Tokenizer(spec: spec)
        }
        let malformed = try self.spec().with { $0.merges.append("nospace") }
        #expect(throws: TokenizerError.malformedMerge("nospace")) { try Tokenizer(spec: malformed) }
    }

    @Test func inconsistentSpecsAreRejected() throws {
        let base = try spec()
        #expect(throws: TokenizerError.tokenTypeCountMismatch(tokens: base.tokens.count, tokenTypes: 1)) {
            try Tokenizer(spec: base.with { $0.tokenTypes = [1] })
        }
        #expect(throws: TokenizerError.specialTokenIDOutOfRange(name: "BOS", id: 5000, vocabularySize: base.tokens.count)) {
            try Tokenizer(spec: base.with { $0.bosTokenID = 5000 })
        }
        #expect(throws: TokenizerError.emptyVocabulary) {
            try Tokenizer(spec: base.with { $0.tokens = []; $0.tokenTypes = []; $0.merges = [] })
        }
    }
}

extension TokenizerSpec {
    func with(_ change: (inout TokenizerSpec) -> Void) -> TokenizerSpec {
        var copy = self
        change(&copy)
        return copy
    }
}

@Suite struct ByteLevelTests {
    @Test func mappingIsGPT2sAndReversible() {
        #expect(ByteLevel.encode(Array(" the\n\t".utf8)) == "ĠtheĊĉ")
        #expect(ByteLevel.encode([0x00, 0x7F, 0xAD, 0xE9]) == "ĀġŃé")
        let allBytes = (0..<256).map { UInt8($0) }
        let text = ByteLevel.encode(allBytes)
        #expect(Set(text.unicodeScalars).count == 256)
        #expect(ByteLevel.decode(text) == allBytes)
        #expect(ByteLevel.decode("<|im_start|>") == Array("<|im_start|>".utf8))
        #expect(ByteLevel.decode("中") == nil)
        #expect(ByteLevel.decode("a b") == nil)  // a literal space is not a mapped character
    }
}
