import CondenseModel
import CondenseTensor
import CondenseTokenizer
import Foundation
import Testing

/// KV-cached decoding must reproduce the full forward pass over the whole prefix.
///
/// Tolerance 1e-5 × activation RMS rather than equality: the GEMMs run with a different row count (1 row per
/// decode step vs the whole sequence), and OpenBLAS picks other micro-kernels (and summation orders) for
/// them. Everything else is the same code on the same values.
@Suite struct KVCacheDecodingTests {
    static let tolerance: Float = 1e-5

    /// Prefill, a multi-token chunk, then single tokens: every new row equals the full forward's row.
    @Test(arguments: Architecture.allCases)
    func cachedStepsMatchFullForward(_ architecture: Architecture) throws {
        let config = TinyModels.config(architecture)
        let model = try LlamaModel(weights: TinyModels.weights(config, seed: 11))
        let tokens = TinyModels.tokens(count: 40, vocabSize: config.vocabSize, seed: 12)
        let full = try model.forward([tokens])
        let hidden = config.hiddenSize
        let expected = Array(full.states(of: 0))
        let scale = (expected.reduce(0) { $0 + $1 * $1 } / Float(expected.count)).squareRoot()

        let cache = model.makeKVCache(capacity: tokens.count)
        var position = 0, maxError: Float = 0
        // Chunk sizes cross the attention kernel's 32-key blocks.
        for chunk in [9, 4, 1, 1, 1, 19, 1, 1, 1, 1, 1] {
            let states = try model.forward(appending: Array(tokens[position..<(position + chunk)]), to: cache)
            #expect(states.rows == chunk && states.cols == hidden)
            for (offset, value) in states.data.enumerated() {
                maxError = max(maxError, abs(value - expected[position * hidden + offset]))
            }
            position += chunk
            #expect(cache.count == position)
        }
        #expect(position == tokens.count)
        print("\(architecture): cached vs full forward, max difference \(maxError) at activation RMS \(scale)")
        #expect(maxError <= Self.tolerance * scale, "max difference \(maxError) at activation RMS \(scale)")
    }

    @Test func resetCacheStartsANewSequence() throws {
        let config = TinyModels.config(.llama)
        let model = try LlamaModel(weights: TinyModels.weights(config, seed: 11))
        let cache = model.makeKVCache(capacity: 16)
        let first = try model.forward(appending: [5, 6, 7], to: cache)
        _ = try model.forward(appending: [8, 9], to: cache)
        cache.reset()
        #expect(cache.count == 0)
        let again = try model.forward(appending: [5, 6, 7], to: cache)
        #expect(again.data == first.data)
    }

    @Test func cacheOverflowAndBadTokensThrow() throws {
        let config = TinyModels.config(.llama)
        let model = try LlamaModel(weights: TinyModels.weights(config, seed: 11))
        let cache = model.makeKVCache(capacity: 4)
        _ = try model.forward(appending: [1, 2, 3], to: cache)
        #expect(throws: ForwardError.sequenceTooLong(sequence: 0, length: 5, limit: 4)) {
            try model.forward(appending: [4, 5], to: cache)
        }
        #expect(cache.count == 3)
        #expect(throws: ForwardError.tokenOutOfRange(sequence: 0, position: 0, token: 61, vocabSize: 61)) {
            try model.forward(appending: [61], to: cache)
        }
        // The capacity is capped at the model's position limit.
        #expect(model.makeKVCache(capacity: 10_000).capacity == model.maxSequenceLength)
    }

    /// Logits are the last position's final hidden state times the LM head: the embedding when tied, the
    /// output projection when not.
    @Test(arguments: [false, true])
    func logitsUseTheLanguageModelHead(untied: Bool) throws {
        let config = TinyModels.config(.qwen2)
        var weights = TinyModels.weights(config, seed: 21)
        if untied {
            var random = ForwardTestRandom(seed: 22)
            weights.outputProjection = Matrix(
                rows: config.vocabSize, cols: config.hiddenSize,
                data: random.normal(config.vocabSize * config.hiddenSize, deviation: 0.1))
        }
        let head = weights.outputProjection ?? weights.tokenEmbedding
        let generator = try TextGenerator(weights: weights)
        let tokens = TinyModels.tokens(count: 13, vocabSize: config.vocabSize, seed: 23)
        let last = Array(try generator.model.forward([tokens]).states(of: 0).suffix(config.hiddenSize))
        let expected = (0..<config.vocabSize).map { row in
            (0..<config.hiddenSize).reduce(0.0) { $0 + Double(last[$1]) * Double(head.data[row * config.hiddenSize + $1]) }
        }
        let cache = generator.model.makeKVCache(capacity: 16)
        let logits = try generator.nextTokenLogits(appending: Array(tokens.prefix(10)), to: cache)
        #expect(logits.count == config.vocabSize)
        let stepped = try generator.nextTokenLogits(appending: Array(tokens.suffix(3)), to: cache)
        let scale = (expected.reduce(0) { $0 + $1 * $1 } / Double(expected.count)).squareRoot()
        let maxError = zip(stepped, expected).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(maxError <= 1e-5 * scale, "max difference \(maxError) at logit RMS \(scale)")
        #expect(throws: GenerationError.emptyPrompt) { try generator.nextTokenLogits(appending: [], to: cache) }
    }

    @Test func outputProjectionOfTheWrongShapeIsRejected() throws {
        let config = TinyModels.config(.llama)
        var weights = TinyModels.weights(config, seed: 21)
        weights.outputProjection = Matrix(zeros: config.vocabSize - 1, config.hiddenSize)
        #expect(throws: LlamaModelError.shapeMismatch(tensor: "output", expected: "61x64", actual: "60x64")) {
            try TextGenerator(weights: weights)
        }
    }

    @Test func generationStopsAtStopTokensLimitsAndConditions() throws {
        let config = TinyModels.config(.llama)
        let generator = try TextGenerator(weights: TinyModels.weights(config, seed: 31))
        let prompt = TinyModels.tokens(count: 6, vocabSize: config.vocabSize, seed: 32)
        let cache = generator.model.makeKVCache(capacity: 64)
        func run(maxNewTokens: Int, stop: Set<Int32> = [], shouldStop: @escaping ([Int32]) -> Bool = { _ in false }) throws -> Generation {
            var greedy = Sampler(temperature: 0, seed: 0)
            return try generator.generate(
                prompt: prompt, maxNewTokens: maxNewTokens, stopTokens: stop, sampler: &greedy, cache: cache, shouldStop: shouldStop)
        }
        let free = try run(maxNewTokens: 8)
        #expect(free.tokens.count == 8 && free.finishReason == .tokenLimit)
        #expect(cache.count == prompt.count + 7)  // the last sampled token is never fed back

        // Greedy decoding by hand: argmax of the full forward's logits, token by token.
        var sequence = prompt
        for _ in 0..<3 {
            let fresh = generator.model.makeKVCache(capacity: 64)
            sequence.append(Sampler.argmax(try generator.nextTokenLogits(appending: sequence, to: fresh)))
        }
        #expect(Array(free.tokens.prefix(3)) == Array(sequence.suffix(3)))

        let stopped = try run(maxNewTokens: 8, stop: [free.tokens[2]])
        let firstStop = try #require(free.tokens.firstIndex(of: free.tokens[2]))
        #expect(stopped.tokens == Array(free.tokens.prefix(firstStop)) && stopped.finishReason == .stopToken)

        let conditioned = try run(maxNewTokens: 8, shouldStop: { $0.count == 5 })
        #expect(conditioned.tokens == Array(free.tokens.prefix(5)) && conditioned.finishReason == .stopCondition)

        let small = generator.model.makeKVCache(capacity: prompt.count + 2)
        var greedy = Sampler(temperature: 0, seed: 0)
        let full = try generator.generate(prompt: prompt, maxNewTokens: 8, stopTokens: [], sampler: &greedy, cache: small)
        #expect(full.tokens == Array(free.tokens.prefix(3)) && full.finishReason == .cacheFull)
    }

    /// The real model: the chat prompt, then a few greedy tokens decoded step by step, against the full
    /// forward over prompt + those tokens. Tolerance 5e-5 × activation RMS: 30 layers carry the GEMM
    /// rounding differences further than the tiny models' 2 (measured: about 7e-6).
    @Test(.enabled(if: LoaderFixtures.defaultModelPresent, "default model absent: set CONDENSE_TEST_MODEL or add models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    func defaultModelCachedDecodingMatchesFullForward() throws {
        let loaded = try ModelLoader.load(path: LoaderFixtures.defaultModelPath)
        let tokenizer = try Tokenizer(spec: loaded.tokenizer)
        let generator = try TextGenerator(weights: loaded.weights)
        let template = try ChatTemplate.load(modelPath: LoaderFixtures.defaultModelPath)
        let prompt = try template.promptTokens(
            system: nil, user: "Paraphrase: the cat sat.", tokenizer: tokenizer)
        let cache = generator.model.makeKVCache(capacity: prompt.count + 8)
        var greedy = Sampler(temperature: 0, seed: 0)
        let generation = try generator.generate(prompt: prompt, maxNewTokens: 5, stopTokens: [], sampler: &greedy, cache: cache)
        #expect(generation.tokens.count == 5)

        // Hidden states: cached rows vs the full forward over everything the cache saw.
        let sequence = prompt + generation.tokens.dropLast()
        let expected = Array(try generator.model.forward([sequence]).states(of: 0))
        let scale = (expected.reduce(0) { $0 + $1 * $1 } / Float(expected.count)).squareRoot()
        let stepCache = generator.model.makeKVCache(capacity: sequence.count)
        var actual = try generator.model.forward(appending: prompt, to: stepCache).data
        for token in generation.tokens.dropLast() {
            actual += try generator.model.forward(appending: [token], to: stepCache).data
        }
        #expect(actual.count == expected.count)
        let maxError = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
        print("SmolLM2: cached vs full forward over \(sequence.count) tokens, max difference \(maxError) at activation RMS \(scale)")
        #expect(maxError <= 5e-5 * scale, "max difference \(maxError) at activation RMS \(scale)")

        // The last greedy token is the argmax of the full forward's logits after everything before it.
        let fresh = generator.model.makeKVCache(capacity: sequence.count)
        #expect(Sampler.argmax(try generator.nextTokenLogits(appending: sequence, to: fresh)) == generation.tokens.last)
    }
}
