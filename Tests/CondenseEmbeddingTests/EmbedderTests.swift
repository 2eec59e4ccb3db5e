import CondenseEmbedding
import CondenseModel
import CondenseTensor
import Foundation
import Testing

@Suite struct EmbedderTests {
    let texts = [
        "the tree and the house",
        "a fox",
        "then the motor went to the moon and the ten men sat in the hotel to eat",
        "to",
        "hello there, in the morning",
    ]

    @Test func meanPoolingAveragesTheModelsFinalStates() throws {
        let embedder = try Fixtures.tinyEmbedder()
        let options = EmbeddingOptions(prompt: try PromptTemplate(nameOrTemplate: "cluster1"), pooling: .mean)
        let prepared = try embedder.prepare(texts[0], options: options)
        #expect(prepared.tokens == embedder.tokenizer.encode(options.prompt.apply(to: texts[0])))
        let output = try embedder.model.forward([prepared.tokens])
        let width = embedder.dimensions
        var expected = [Float](repeating: 0, count: width)
        for row in 0..<prepared.tokens.count {
            for column in 0..<width { expected[column] += output.hidden.data[row * width + column] / Float(prepared.tokens.count) }
        }
        let result = try embedder.embed([texts[0]], options: options)[0].get()
        expectClose(result, expected, tolerance: 1e-5)
    }

    @Test func eosPoolingAppendsTheEOSTokenAndTakesItsState() throws {
        let embedder = try Fixtures.tinyEmbedder()
        let eos = try #require(embedder.tokenizer.eosTokenID)
        let options = EmbeddingOptions(prompt: try PromptTemplate(nameOrTemplate: "eol"), pooling: .eos)
        let prepared = try embedder.prepare(texts[1], options: options)
        #expect(prepared.tokens == embedder.tokenizer.encode(options.prompt.apply(to: texts[1])) + [eos])
        let output = try embedder.model.forward([prepared.tokens])
        let last = Array(output.states(of: 0).suffix(embedder.dimensions))
        expectClose(try embedder.embed([texts[1]], options: options)[0].get(), last)
    }

    @Test func mixedBatchesKeepInputOrderAndMatchSingleTexts() throws {
        // A budget of 40 tokens forces several batches for these texts.
        let embedder = try Fixtures.tinyEmbedder(tokenBudget: 40)
        for pooling in Pooling.allCases {
            let options = EmbeddingOptions(prompt: try PromptTemplate(nameOrTemplate: "cluster2"), pooling: pooling)
            let lengths = try texts.map { try embedder.prepare($0, options: options).tokens.count }
            #expect(BatchPlanner.plan(lengths: lengths, tokenBudget: 40).count > 1)
            let together = try embedder.embed(texts, options: options)
            #expect(together.count == texts.count)
            for (index, text) in texts.enumerated() {
                let alone = try embedder.embed([text], options: options)[0].get()
                #expect(try together[index].get().map(\.bitPattern) == alone.map(\.bitPattern))
            }
        }
    }

    @Test func emptyTextFailsOnlyItsItem() throws {
        let embedder = try Fixtures.tinyEmbedder()
        let results = try embedder.embed(["a fox", "", "  \n", "to"], options: EmbeddingOptions())
        #expect(throws: EmbeddingError.emptyText) { try results[1].get() }
        #expect(throws: EmbeddingError.emptyText) { try results[2].get() }
        #expect(try results[0].get().count == embedder.dimensions)
        #expect(try results[3].get().count == embedder.dimensions)
        #expect(try results[0].get().allSatisfy { $0.isFinite })
    }

    @Test func invalidUTF8IsAnItemError() throws {
        #expect(throws: EmbeddingError.invalidUTF8) { try Embedder.decodeText([0x61, 0xFF, 0x62]).get() }
        #expect(throws: EmbeddingError.invalidUTF8) { try Embedder.decodeText([0xE2, 0x82]).get() }
        #expect(try Embedder.decodeText(Array("héllo".utf8)).get() == "héllo")
        #expect(EmbeddingError.invalidUTF8.isItemError)
    }

    @Test func dimensionsOutOfRangeFailTheRequest() throws {
        let embedder = try Fixtures.tinyEmbedder()
        for dimensions in [0, -1, embedder.dimensions + 1] {
            #expect(throws: EmbeddingError.dimensionsOutOfRange(requested: dimensions, available: embedder.dimensions)) {
                try embedder.embed(["a fox"], options: EmbeddingOptions(dimensions: dimensions))
            }
        }
        #expect(throws: EmbeddingError.invalidMaxTokens(0)) {
            try embedder.embed(["a fox"], options: EmbeddingOptions(maxTokens: 0))
        }
    }

    @Test func normalizeWithDimensionsRenormalizesTheKeptPart() throws {
        let embedder = try Fixtures.tinyEmbedder()
        let full = try embedder.embed([texts[0]], options: EmbeddingOptions())[0].get()
        let cut = try embedder.embed([texts[0]], options: EmbeddingOptions(normalize: true, dimensions: 8))[0].get()
        #expect(cut.count == 8)
        let head = Array(full.prefix(8))
        let norm = head.reduce(0) { $0 + $1 * $1 }.squareRoot()
        expectClose(cut, head.map { $0 / norm }, tolerance: 1e-5)
        #expect(abs(cut.reduce(0) { $0 + $1 * $1 } - 1) < 1e-5)
    }

    @Test func truncateKeepsTheFirstTokensOfTheRawTextThenWraps() throws {
        let embedder = try Fixtures.tinyEmbedder()
        let prompt = try PromptTemplate(nameOrTemplate: "cluster1")
        let text = texts[2]
        let raw = embedder.tokenizer.encode(text, addSpecialTokens: false)
        #expect(raw.count > 5)
        let options = EmbeddingOptions(prompt: prompt, maxTokens: 5)
        let prepared = try embedder.prepare(text, options: options)
        let kept = embedder.tokenizer.decode(Array(raw.prefix(5)))
        #expect(prepared.tokens == embedder.tokenizer.encode(prompt.apply(to: kept)))
        #expect(prepared.truncated)
        let untouched = try embedder.prepare(text, options: EmbeddingOptions(prompt: prompt, maxTokens: raw.count))
        #expect(!untouched.truncated)
        #expect(untouched.tokens == embedder.tokenizer.encode(prompt.apply(to: text)))
    }

    @Test func rejectNamesTheLimit() throws {
        let embedder = try Fixtures.tinyEmbedder()
        let raw = embedder.tokenizer.encode(texts[2], addSpecialTokens: false)
        let options = EmbeddingOptions(maxTokens: 5, truncation: .reject)
        let results = try embedder.embed([texts[2], "a fox"], options: options)
        #expect(throws: EmbeddingError.textTooLong(tokens: raw.count, limit: 5)) { try results[0].get() }
        #expect(EmbeddingError.textTooLong(tokens: raw.count, limit: 5).description.contains("limit is 5"))
        #expect(try results[1].get().count == embedder.dimensions)
    }

    @Test func textLongerThanTheModelAcceptsIsAnItemError() throws {
        let embedder = try Fixtures.tinyEmbedder()
        let limit = embedder.model.maxSequenceLength
        let long = String(repeating: "the tree ", count: limit)
        let results = try embedder.embed([long, "a fox"], options: EmbeddingOptions(maxTokens: 10 * limit))
        #expect(throws: EmbeddingError.self) { try results[0].get() }
        if case .failure(.exceedsModelLimit(_, let reportedLimit)) = results[0] { #expect(reportedLimit == limit) } else {
            Issue.record("expected exceedsModelLimit, got \(results[0])")
        }
        #expect(try results[1].get().count == embedder.dimensions)
    }

    @Test func excludePromptPoolsOnlyTheTextsOwnTokens() throws {
        let embedder = try Fixtures.tinyEmbedder()
        let tokenizer = embedder.tokenizer
        let text = "the tree and the house"
        // Prefix without trailing space: the text is tokenized on its own.
        let quoted = EmbeddingOptions(prompt: try PromptTemplate(nameOrTemplate: "cluster1"), excludePrompt: true)
        let prepared = try embedder.prepare(text, options: quoted)
        #expect(Array(prepared.tokens[prepared.textTokens]) == tokenizer.encode(text, addSpecialTokens: false))
        #expect(prepared.tokens == tokenizer.encode("This sentence: \"", addSpecialTokens: false)
            + tokenizer.encode(text, addSpecialTokens: false)
            + tokenizer.encode("\" belongs to the following cluster:", addSpecialTokens: false))
        // A prefix ending in a space gives the space to the text ("Ġthe", as in the whole string).
        let spaced = EmbeddingOptions(prompt: try PromptTemplate(nameOrTemplate: "cluster2"), excludePrompt: true)
        let second = try embedder.prepare(text, options: spaced)
        #expect(Array(second.tokens[second.textTokens]) == tokenizer.encode(" " + text, addSpecialTokens: false))

        let output = try embedder.model.forward([prepared.tokens])
        let width = embedder.dimensions
        let expected = PoolingMath.pool(output.states(of: 0), width: width, pooling: .mean, pooledRows: prepared.textTokens)
        expectClose(try embedder.embed([text], options: quoted)[0].get(), expected)
        let all = try embedder.embed([text], options: EmbeddingOptions(prompt: quoted.prompt))[0].get()
        #expect(all != expected)
    }

    @Test func progressReachesTheTextCount() throws {
        let embedder = try Fixtures.tinyEmbedder(tokenBudget: 20)
        let recorder = ProgressRecorder()
        _ = try embedder.embed(texts + [""], options: EmbeddingOptions(), progress: { recorder.record($0) })
        let values = recorder.values
        #expect(values.last == texts.count + 1)
        #expect(values == values.sorted())
        #expect(values.count > 1)
    }
}

final class ProgressRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [Int] = []
    func record(_ value: Int) {
        lock.lock()
        defer { lock.unlock() }
        recorded.append(value)
    }
    var values: [Int] {
        lock.lock()
        defer { lock.unlock() }
        return recorded
    }
}
