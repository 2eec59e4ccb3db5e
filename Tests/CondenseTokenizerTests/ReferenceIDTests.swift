import Testing

@testable import CondenseTokenizer

/// Every corpus string must give exactly HF `tokenizers`' ids, for each supported pre-tokenizer family.
@Suite struct ReferenceIDTests {
    @Test(arguments: Fixtures.families)
    func encodeMatchesHuggingFace(family: String) throws {
        let tokenizer = try Fixtures.tokenizer(family)
        let expected = try Fixtures.expectedIDs()
        let familyIDs = try #require(expected.ids[family])
        #expect(expected.corpus.count == familyIDs.count)
        #expect(expected.corpus.count >= 40)
        for (text, ids) in zip(expected.corpus, familyIDs) {
            let encoded = tokenizer.encode(text)
            #expect(encoded == ids, "\(family): \(String(text.prefix(80)).debugDescription)")
        }
    }

    @Test(arguments: Fixtures.families)
    func decodeRestoresTheText(family: String) throws {
        let tokenizer = try Fixtures.tokenizer(family)
        for text in try Fixtures.expectedIDs().corpus {
            #expect(tokenizer.decode(tokenizer.encode(text)) == text, "\(family): \(String(text.prefix(80)).debugDescription)")
        }
    }

    @Test func corpusCoversTheRequiredCases() throws {
        let corpus = try Fixtures.expectedIDs().corpus
        #expect(corpus.contains { $0.count >= 5000 && !$0.contains(" ") })
        #expect(corpus.contains { $0.unicodeScalars.contains { $0.value >= 0x1F600 } })  // emoji
        #expect(corpus.contains { $0.unicodeScalars.contains { (0x4E00...0x9FFF).contains($0.value) } })  // CJK
        #expect(corpus.contains { $0.contains("\t") && $0.hasSuffix(" \t") })
        #expect(corpus.contains { $0.contains("'LL") || $0.contains("'Ll") })
        #expect(corpus.contains { $0.contains("<|im_start|>") })
    }
}
