import CondenseEmbedding
import CondenseModel
import CondenseTensor
import Testing
@testable import CondenseTraining

@Suite struct TrainerTests {
    static func configuration(
        dropout: Float = 0, targets: [LoRATarget] = LoRATarget.defaultTargets, microBatchTokens: Int = 1024,
        pooling: Pooling = .mean, learningRate: Float = 1e-3, warmupSteps: Int = 0, margin: Float = 0
    ) -> TrainingConfiguration {
        TrainingConfiguration(
            lora: LoRAConfiguration(rank: 4, alpha: 8, dropout: dropout, targets: targets), learningRate: learningRate,
            warmupSteps: warmupSteps, totalSteps: 100, temperature: 0.2, margin: margin, pooling: pooling,
            microBatchTokens: microBatchTokens, seed: 3)
    }

    /// An adapter with random B (a fresh one has B = 0, which hides every A gradient).
    static func adapter(_ configuration: TrainingConfiguration, model: ModelConfig, seed: UInt64 = 5) throws -> LoRAAdapter {
        let layout = LoRALayout(configuration: configuration.lora, model: model)
        var adapter = LoRAAdapter(layout: layout, seed: configuration.seed)
        var random = TestRandom(seed: seed)
        for slot in layout.slots {
            for i in slot.bOffset..<(slot.bOffset + slot.bCount) { adapter.parameters[i] = Float.random(in: -0.3...0.3, using: &random) }
        }
        return adapter
    }

    @Test(arguments: [Architecture.llama, .qwen2, .qwen3])
    func trainingForwardEqualsInferenceForward(architecture: Architecture) throws {
        let weights = TinyModel.weights(architecture)
        let texts = [TinyModel.tokens(9, seed: 1), TinyModel.tokens(1, seed: 2), TinyModel.tokens(17, seed: 3)]
        let inference = try LlamaModel(weights: weights).forward(texts)
        let trainer = try LlamaTrainer(
            weights: weights, configuration: Self.configuration(targets: LoRATarget.allCases))
        let states = try trainer.finalHiddenStates(texts.map { TrainingText(tokens: $0) })
        #expect(states.count == inference.hidden.data.count)
        let scale = (inference.hidden.data.reduce(0) { $0 + $1 * $1 } / Float(states.count)).squareRoot()
        let worst = zip(states, inference.hidden.data).map { abs($0 - $1) }.max() ?? 0
        #expect(worst / scale < 1e-5, "max difference \(worst / scale) × activation RMS")
        // Embeddings are the inference pooling of those states.
        let embeddings = try trainer.embed(texts.map { TrainingText(tokens: $0) })
        let reference = PoolingMath.pool(inference.states(of: 2), width: 32, pooling: .mean, pooledRows: 0..<17)
        #expect(zip(embeddings[2], reference).allSatisfy { abs($0 - $1) <= 1e-5 * scale })
    }

    @Test(arguments: [(Architecture.llama, Pooling.mean), (.qwen2, .last), (.qwen3, .weightedMean)])
    func fullLossGradientMatchesFiniteDifferences(architecture: Architecture, pooling: Pooling) throws {
        let weights = TinyModel.weights(architecture)
        let configuration = Self.configuration(dropout: 0.1, targets: LoRATarget.allCases, pooling: pooling)
        let adapter = try Self.adapter(configuration, model: weights.config)
        let pairs = TinyModel.pairs(3, seed: 21)
        func loss(_ parameters: [Float]) -> Double {
            let candidate = try? LoRAAdapter(layout: adapter.layout, parameters: parameters)
            let trainer = candidate.flatMap { try? LlamaTrainer(weights: weights, configuration: configuration, adapter: $0) }
            return (try? trainer?.lossAndGradients(pairs).loss) ?? .nan
        }
        let trainer = try LlamaTrainer(weights: weights, configuration: configuration, adapter: adapter)
        let (_, gradients) = try trainer.lossAndGradients(pairs)
        for layer in [0, 1] {
            for target in [LoRATarget.q, .k, .o, .down] {
                let slot = try #require(adapter.layout.slot(layer: layer, target: target))
                let errorA = GradientCheck.relativeError(
                    adapter.parameters, analytic: gradients, step: 1e-2, samples: 8, within: slot.aOffset..<slot.bOffset, loss: loss)
                let errorB = GradientCheck.relativeError(
                    adapter.parameters, analytic: gradients, step: 1e-2, samples: 8,
                    within: slot.bOffset..<(slot.bOffset + slot.bCount), loss: loss)
                #expect(errorA < GradientCheck.tolerance, "layer \(layer) \(target) A: relative error \(errorA)")
                #expect(errorB < GradientCheck.tolerance, "layer \(layer) \(target) B: relative error \(errorB)")
            }
        }
    }

    @Test func gradientCachingEqualsFullBatchBackward() throws {
        let weights = TinyModel.weights()
        let pairs = TinyModel.pairs(8, seed: 31)
        // 8 pairs of 3...10 tokens per text: one pass, versus micro-batches of 2 or 3 texts (≤ 20 tokens).
        let full = Self.configuration(dropout: 0.1, microBatchTokens: 1024)
        let cached = Self.configuration(dropout: 0.1, microBatchTokens: 20)
        let adapter = try Self.adapter(full, model: weights.config)
        let (fullLoss, fullGradients) = try LlamaTrainer(weights: weights, configuration: full, adapter: adapter).lossAndGradients(pairs)
        let cachedTrainer = try LlamaTrainer(weights: weights, configuration: cached, adapter: adapter)
        let texts = pairs.map(\.text) + pairs.map(\.positive)
        let microBatches = cachedTrainer.microBatches(texts)
        #expect(microBatches.count >= 6 && microBatches.allSatisfy { $0.textCount >= 1 && $0.tokenCount <= 20 })
        #expect(microBatches.reduce(0) { $0 + $1.textCount } == 16)
        let (cachedLoss, cachedGradients) = try cachedTrainer.lossAndGradients(pairs)
        #expect(abs(fullLoss - cachedLoss) < 1e-5)
        let difference = zip(fullGradients, cachedGradients).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
        let norm = fullGradients.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        #expect(norm > 0)
        #expect(difference / norm < 1e-5, "relative difference \(difference / norm)")
    }

    @Test func microBatchesPackConsecutiveTextsWithinTheTokenBudget() throws {
        let trainer = try LlamaTrainer(weights: TinyModel.weights(), configuration: Self.configuration(microBatchTokens: 10))
        let texts = [4, 5, 12, 3, 3, 3].map { TrainingText(tokens: [Int32](repeating: 1, count: $0)) }
        let batches = trainer.microBatches(texts)
        #expect(batches.map(\.offsets) == [[0, 4, 9], [0, 12], [0, 3, 6, 9]])
        // Dropout rows keep their global text index, whatever the micro-batch.
        #expect(batches[2].rowKeys[0] == DropoutMask.rowKey(text: 3, position: 0))
    }

    @Test func sameSeedGivesBitIdenticalAdapters() throws {
        let weights = TinyModel.weights()
        let configuration = Self.configuration(dropout: 0.05, microBatchTokens: 16)
        func train() throws -> [Float] {
            let trainer = try LlamaTrainer(weights: weights, configuration: configuration)
            for step in 0..<3 { try trainer.step(TinyModel.pairs(5, seed: 40 + UInt64(step))) }
            return trainer.adapter.parameters
        }
        let first = try train(), second = try train()
        #expect(first == second)
        #expect(first != LoRAAdapter(layout: LoRALayout(configuration: configuration.lora, model: weights.config), seed: 3).parameters)
    }

    @Test func aFewStepsReduceTheLossOnAToyTask() throws {
        let weights = TinyModel.weights()
        let trainer = try LlamaTrainer(weights: weights, configuration: Self.configuration(learningRate: 1e-2))
        let pairs = TinyModel.pairs(8, seed: 51)
        let initial = try trainer.lossAndGradients(pairs).loss
        for _ in 0..<15 { try trainer.step(pairs) }
        let final = try trainer.lossAndGradients(pairs).loss
        #expect(final < 0.8 * initial, "loss \(initial) → \(final)")
    }

    @Test func freshAdapterIsInitialisedAsPEFTDoes() throws {
        let weights = TinyModel.weights()
        let configuration = Self.configuration()
        let layout = LoRALayout(configuration: configuration.lora, model: weights.config)
        let adapter = LoRAAdapter(layout: layout, seed: 9)
        for slot in layout.slots {
            let a = try #require(adapter.a(layer: slot.layer, target: slot.target))
            let b = try #require(adapter.b(layer: slot.layer, target: slot.target))
            #expect(a.rows == 4 && a.cols == slot.inFeatures && b.rows == slot.outFeatures && b.cols == 4)
            #expect(b.data.allSatisfy { $0 == 0 })
            let bound = 1 / Float(slot.inFeatures).squareRoot()
            #expect(a.data.allSatisfy { abs($0) <= bound })
            #expect(a.data.contains { $0 != 0 })
        }
        #expect(adapter.a(layer: 0, target: .k) == nil)
        #expect(adapter.a(layer: 2, target: .q) == nil)
        // Per layer: q 4·32 + 32·4, v 4·32 + 16·4, o 4·32 + 32·4, gate and up 4·32 + 48·4, down 4·48 + 32·4.
        #expect(layout.parameterCount == 2 * (256 + 192 + 256 + 320 + 320 + 320))
        #expect(LoRAAdapter(layout: layout, seed: 9) == adapter)
        #expect(LoRAAdapter(layout: layout, seed: 10) != adapter)
    }

    @Test func invalidInputsAreTypedErrors() throws {
        let weights = TinyModel.weights()
        let trainer = try LlamaTrainer(weights: weights, configuration: Self.configuration())
        let one = TinyModel.pairs(1, seed: 1)
        #expect(throws: TrainingError.batchTooSmall(pairs: 1)) { try trainer.step(one) }
        var pairs = TinyModel.pairs(2, seed: 1)
        pairs[1].positive = TrainingText(tokens: [1, 64])
        #expect(throws: TrainingError.tokenOutOfRange(text: 3, position: 1, token: 64, vocabSize: 64)) { try trainer.step(pairs) }
        pairs[1].positive = TrainingText(tokens: [])
        #expect(throws: TrainingError.emptyText(index: 3)) { try trainer.step(pairs) }
        pairs[1].positive = TrainingText(tokens: [Int32](repeating: 1, count: 129))
        #expect(throws: TrainingError.textTooLong(text: 3, length: 129, limit: 128)) { try trainer.step(pairs) }
        #expect(throws: TrainingError.emptyText(index: 0)) { try trainer.embed([TrainingText(tokens: [])]) }
        #expect(trainer.completedSteps == 0)
        #expect(throws: TrainingError.self) {
            try LlamaTrainer(weights: weights, configuration: TrainingConfiguration(lora: LoRAConfiguration(rank: 0)))
        }
        #expect(throws: TrainingError.self) {
            try LlamaTrainer(weights: weights, configuration: TrainingConfiguration(temperature: 0))
        }
        var broken = weights
        broken.layers[1].wUp = Matrix(zeros: 3, 3)
        #expect(throws: TrainingError.invalidModel("weight blk.1.ffn_up has shape 3x3, expected 48x32")) {
            try LlamaTrainer(weights: broken, configuration: Self.configuration())
        }
        let otherLayout = LoRALayout(configuration: LoRAConfiguration(rank: 2), model: weights.config)
        #expect(throws: TrainingError.self) {
            try LlamaTrainer(weights: weights, configuration: Self.configuration(), adapter: LoRAAdapter(layout: otherLayout, seed: 1))
        }
    }
}
