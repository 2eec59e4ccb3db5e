import CondenseEmbedding
import Testing

@Suite(.enabled(if: Fixtures.realModelPath != nil,
                "default model absent: set CONDENSE_TEST_MODEL or put models/SmolLM2-135M-Instruct.Q4_1.gguf in the package"))
struct RealModelTests {
    let sentences = [
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar in front of an audience.",
        "The stock market fell sharply after the interest rate announcement.",
    ]

    @Test(arguments: [("cluster1", Pooling.last), ("none", Pooling.mean)])
    func finiteVectorsAndParaphrasesAreCloser(prompt: String, pooling: Pooling) throws {
        let embedder = try #require(Fixtures.realEmbedder)
        let options = EmbeddingOptions(prompt: try PromptTemplate(nameOrTemplate: prompt), pooling: pooling)
        let vectors = try embedder.embed(sentences, options: options).map { try $0.get() }
        for vector in vectors {
            #expect(vector.count == 576)
            #expect(vector.allSatisfy { $0.isFinite })
        }
        let paraphrase = cosine(vectors[0], vectors[1]), unrelated = cosine(vectors[0], vectors[2])
        #expect(paraphrase > unrelated, "paraphrase cosine \(paraphrase) vs unrelated \(unrelated)")
    }
}
