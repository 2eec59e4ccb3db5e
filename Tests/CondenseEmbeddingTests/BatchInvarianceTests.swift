import CondenseEmbedding
import CondenseTensor
import Foundation
import Testing

/// A text's vector must not depend, in any bit, on the other texts of the `embed` call, their order, or the
/// token budget that cuts them into forward batches: the coordinator's chunks must reproduce a local run.
/// (Holds on every CPU: the engine's packed-weight kernels sum each row the same way whatever the batch.)
@Suite struct BatchInvarianceTests {
    /// Lengths from one token of text to a few hundred, so batches span one-row products and many-row ones.
    static let texts: [String] = {
        let long = "then the motor went to the moon and the ten men sat in the hotel to eat "
        return [
            "a", "to", "hi", "a fox", "the tree and the house", "x y", "hello there, in the morning",
            String(repeating: long, count: 2), "to be", "ok", "the end", String(repeating: long, count: 6),
            "A man is playing a guitar on stage.", "The stock market fell sharply after the announcement.", "e",
        ]
    }()

    /// The coordinator finding's options first (`--normalize --pooling mean --prompt none`).
    static let optionSets = [
        EmbeddingOptions(prompt: .none, pooling: .mean, normalize: true),
        EmbeddingOptions(pooling: .last), EmbeddingOptions(pooling: .weightedMean),
    ]

    @Test func tinyModelVectorsIgnoreBatchComposition() throws {
        try expectBatchInvariance(Fixtures.tinyEmbedder(), budgets: [1, 5, 16, 40, 100, 10_000], chunkSizes: [2, 3, 4, 5])
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["CONDENSE_TEST_MODEL"] != nil && Fixtures.realModelPath != nil,
                   "set CONDENSE_TEST_MODEL to the default model to run"))
    func realModelVectorsIgnoreBatchComposition() throws {
        // Fewer groupings than the tiny model's: every forward pass of the real model costs.
        try expectBatchInvariance(#require(Fixtures.realEmbedder), budgets: [1, 4096], chunkSizes: [3],
                                  optionSets: [Self.optionSets[0]])
    }

    /// Every text alone is the reference; then all texts in one call, reversed, in consecutive chunks
    /// (a coordinator's `--batch-texts`), and through embedders with other token budgets.
    private func expectBatchInvariance(
        _ embedder: Embedder, budgets: [Int], chunkSizes: [Int], optionSets: [EmbeddingOptions] = Self.optionSets
    ) throws {
        let texts = Self.texts
        for options in optionSets {
            let alone = try texts.map { try bits(embedder.embed([$0], options: options)[0].get()) }

            let together = try embedder.embed(texts, options: options).map { try bits($0.get()) }
            expectSame(together, alone, "one call, \(options.pooling)")

            let reversed = try embedder.embed(texts.reversed(), options: options).map { try bits($0.get()) }
            expectSame(reversed.reversed(), alone, "reversed, \(options.pooling)")

            for chunkSize in chunkSizes {
                var chunked: [[UInt32]] = []
                for start in stride(from: 0, to: texts.count, by: chunkSize) {
                    let chunk = Array(texts[start..<min(start + chunkSize, texts.count)])
                    chunked += try embedder.embed(chunk, options: options).map { try bits($0.get()) }
                }
                expectSame(chunked, alone, "chunks of \(chunkSize), \(options.pooling)")
            }

            for budget in budgets {
                let budgeted = Embedder(model: embedder.model, tokenizer: embedder.tokenizer,
                                        modelName: embedder.modelName, tokenBudget: budget)
                let vectors = try budgeted.embed(texts, options: options).map { try bits($0.get()) }
                expectSame(vectors, alone, "token budget \(budget), \(options.pooling)")
            }
        }
    }

    private func bits(_ vector: [Float]) -> [UInt32] { vector.map(\.bitPattern) }

    private func expectSame(_ actual: [[UInt32]], _ expected: [[UInt32]], _ context: String) {
        #expect(actual.count == expected.count, "\(context): \(actual.count) vectors")
        for (index, (a, e)) in zip(actual, expected).enumerated() where a != e {
            let worst = zip(a, e).map { abs(Float(bitPattern: $0) - Float(bitPattern: $1)) }.max() ?? 0
            Issue.record("\(context): text \(index) differs from the text embedded alone (max |Δ| \(worst))")
        }
    }
}
