import CondenseEmbedding
import CondenseModel
import CondenseTensor
import Foundation
import Testing

@Suite struct EmbeddingRecipeTests {
    final class Scratch {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("condense-recipe-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    @Test func writeThenReadGivesTheSameRecipe() throws {
        let scratch = try Scratch()
        let recipes = [
            EmbeddingRecipe(),
            EmbeddingRecipe(prompt: try PromptTemplate(nameOrTemplate: "eol"), pooling: .last, normalize: true, maxTokens: 100),
            EmbeddingRecipe(prompt: try PromptTemplate(nameOrTemplate: "Query: \"{text}\" → vector"), pooling: .weightedMean,
                            excludePrompt: true, maxTokens: 7),
        ]
        for recipe in recipes {
            try recipe.write(toDirectory: scratch.path)
            #expect(try EmbeddingRecipe.read(fromDirectory: scratch.path) == recipe)
        }
    }

    @Test func fileNamesThePromptAndKeepsItsText() throws {
        let scratch = try Scratch()
        try EmbeddingRecipe(prompt: try PromptTemplate(nameOrTemplate: "cluster2"), pooling: .eos).write(toDirectory: scratch.path)
        let data = try Data(contentsOf: URL(fileURLWithPath: scratch.path + "/condense_recipe.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(json["prompt"] as? String == "cluster2")
        #expect(json["prompt_template"] as? String == "Cluster the text: {text}")
        #expect(json["pooling"] as? String == "eos")
        #expect(json["normalize"] as? Bool == false)
        #expect(json["exclude_prompt"] as? Bool == false)
        #expect(json["max_tokens"] as? Int == 512)
    }

    @Test func absentFileIsNilAndBadFilesAreErrors() throws {
        let scratch = try Scratch()
        #expect(try EmbeddingRecipe.read(fromDirectory: scratch.path) == nil)
        let path = scratch.path + "/condense_recipe.json"
        func read(_ json: String) throws -> EmbeddingRecipeError? {
            try Data(json.utf8).write(to: URL(fileURLWithPath: path))
            do {
                _ = try EmbeddingRecipe.read(fromDirectory: scratch.path)
                return nil
            } catch { return error }
        }
        let valid = #""prompt_template": "{text}", "normalize": false, "exclude_prompt": false, "max_tokens": 5"#
        #expect(try read("{\(valid), \"pooling\": \"max\"}") == EmbeddingRecipeError(path: path, detail: "unknown pooling 'max'"))
        #expect(try read(#"{"prompt_template": "{text}", "pooling": "mean", "normalize": false, "exclude_prompt": false, "max_tokens": 0}"#)
            == EmbeddingRecipeError(path: path, detail: "max_tokens 0 must be at least 1"))
        #expect(try read(#"{"prompt_template": "no placeholder", "pooling": "mean", "normalize": false, "exclude_prompt": false, "max_tokens": 5}"#)?
            .detail.contains("not a named prompt") == true)
        #expect(try read(#"{"pooling": "mean"}"#)?.path == path)
        // A named prompt whose text differs from the built-in one: the stored text is what was trained.
        let renamed = #"{"prompt": "eol", "prompt_template": "Say: {text}", "pooling": "mean", "normalize": false, "exclude_prompt": false, "max_tokens": 5}"#
        #expect(try read(renamed) == nil)
        #expect(try EmbeddingRecipe.read(fromDirectory: scratch.path)?.prompt == (try PromptTemplate(nameOrTemplate: "Say: {text}")))
    }

    @Test func optionsFollowTheRecipe() throws {
        let recipe = EmbeddingRecipe(prompt: try PromptTemplate(nameOrTemplate: "sum"), pooling: .mean, normalize: true,
                                     excludePrompt: true, maxTokens: 64)
        #expect(recipe.options(dimensions: 16, truncation: .reject) == EmbeddingOptions(
            prompt: recipe.prompt, pooling: .mean, normalize: true, excludePrompt: true, dimensions: 16, maxTokens: 64,
            truncation: .reject))
        #expect(EmbeddingRecipe(options: recipe.options()) == recipe)
    }

    /// `Embedder.load(modelPath:adapterDirectory:)` embeds with the merged weights: equal to an embedder built on
    /// weights merged by hand, different from the base model; a zero adapter changes nothing.
    @Test func embedderLoadsWithAnAdapterMerged() throws {
        let scratch = try Scratch()
        let loaded = try ModelLoader.load(path: Fixtures.tinyLlama)
        let config = loaded.weights.config
        func adapter(bScale: Float) -> PEFTAdapter {
            var seed: UInt64 = 1
            func values(_ count: Int, _ scale: Float) -> [Float] {
                (0..<count).map { _ in
                    seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    return (Float(seed >> 40) / Float(1 << 24) - 0.5) * scale
                }
            }
            let layers = (0..<config.layerCount).map { _ in
                Dictionary(uniqueKeysWithValues: [PEFTAdapter.Module.q, .v, .down].map { module in
                    let (inFeatures, outFeatures) = module.features(in: config)
                    return (module, PEFTAdapter.Factors(a: Matrix(rows: 2, cols: inFeatures, data: values(2 * inFeatures, 1)),
                                                        b: Matrix(rows: outFeatures, cols: 2, data: values(outFeatures * 2, bScale))))
                })
            }
            return PEFTAdapter(configuration: .init(rank: 2, alpha: 4, dropout: 0, targetModules: [.q, .v, .down]), layers: layers)
        }
        let texts = ["The quick brown fox jumps over the lazy dog.", "Tiny models make tests fast."]
        let options = EmbeddingOptions(prompt: try PromptTemplate(nameOrTemplate: "eol"), pooling: .last)
        let base = try Fixtures.tinyEmbedder().embed(texts, options: options).map { try $0.get() }

        let trained = adapter(bScale: 1)
        try trained.write(to: scratch.path)
        let withAdapter = try Embedder.load(modelPath: Fixtures.tinyLlama, adapterDirectory: scratch.path)
        let vectors = try withAdapter.embed(texts, options: options).map { try $0.get() }
        let byHand = try Embedder(
            model: LlamaModel(weights: loaded.weights.mergingLoRA(trained)), tokenizer: withAdapter.tokenizer, modelName: "by hand")
        #expect(try byHand.embed(texts, options: options).map { try $0.get() } == vectors)
        #expect(zip(vectors, base).allSatisfy { cosine($0, $1) < 0.999 })

        try adapter(bScale: 0).write(to: scratch.path)
        let zero = try Embedder.load(modelPath: Fixtures.tinyLlama, adapterDirectory: scratch.path)
        #expect(try zero.embed(texts, options: options).map { try $0.get() } == base)

        try PEFTAdapter(configuration: trained.configuration, layers: trained.layers + [trained.layers[0]]).write(to: scratch.path)
        #expect(throws: EmbeddingError.modelUnavailable(
            path: Fixtures.tinyLlama, reason: "adapter \(scratch.path): the adapter adapts 3 layers, the model has 2")) {
            try Embedder.load(modelPath: Fixtures.tinyLlama, adapterDirectory: scratch.path)
        }
    }
}
