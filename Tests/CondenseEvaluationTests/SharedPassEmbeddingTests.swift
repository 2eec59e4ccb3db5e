import CondenseEmbedding
import CondenseTensor
import Testing

@testable import CondenseEvaluation

@Suite(.enabled(if: TinyModel.present, "tiny model fixture absent (Tests/CondenseModelTests/Fixtures/tiny-llama)"))
struct SharedPassEmbeddingTests {
    let texts = [
        "hello world", "a much longer sentence with quite a few more words than the first one",
        "short", "the cat sat on the mat", "numbers 1 2 3 and symbols !?",
    ]

    /// One pass with EOS appended must give, per pooling, what the embedder computes on its own.
    @Test(arguments: ["none", "cluster1", "eol"])
    func everyPoolingMatchesTheEmbedder(promptName: String) throws {
        let embedder = try Embedder.load(modelPath: TinyModel.path, tokenBudget: 40)
        let prompt = try PromptTemplate(nameOrTemplate: promptName)
        let poolings: [Pooling] = [.mean, .last, .eos, .weightedMean]
        let shared = try SharedPassEmbedding.embed(texts, embedder: embedder, prompt: prompt, poolings: poolings)
        #expect(shared.count == poolings.count)
        for (slot, pooling) in poolings.enumerated() {
            let matrix = shared[slot]
            #expect(matrix.rows == texts.count)
            #expect(matrix.cols == embedder.dimensions)
            let alone = try embedder.embed(texts, options: EmbeddingOptions(prompt: prompt, pooling: pooling))
            for (row, result) in alone.enumerated() {
                let expected = try result.get()
                let actual = Array(matrix.data[(row * matrix.cols)..<((row + 1) * matrix.cols)])
                let difference = zip(expected, actual).map { abs($0 - $1) }.max() ?? 0
                #expect(difference < 1e-4, "\(promptName) \(pooling) text \(row): max difference \(difference)")
            }
        }
    }

    @Test func reportsTheFailingItem() throws {
        let embedder = try Embedder.load(modelPath: TinyModel.path)
        #expect(throws: EvaluationError.self) {
            try SharedPassEmbedding.embed(["fine", "   "], embedder: embedder, prompt: .none, poolings: [.mean])
        }
        do {
            _ = try SharedPassEmbedding.embed(["fine", "   "], embedder: embedder, prompt: .none, poolings: [.mean])
        } catch {
            guard case .embeddingFailed(let item, _) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(item == 1)
        }
        #expect(throws: EvaluationError.tooFewItems(what: "poolings", count: 0, required: 1)) {
            try SharedPassEmbedding.embed(["fine"], embedder: embedder, prompt: .none, poolings: [])
        }
    }
}
