import CondenseEmbedding
import CondenseModel
import CondenseTensor

/// Contrastive LoRA fine-tuning of a frozen Llama-family decoder (Llama, SmolLM, Qwen2, Qwen3).
///
/// A step embeds all 2B texts of B pairs, takes InfoNCE over the B x B cosine matrix, backpropagates to
/// the adapters only, clips the global gradient norm and applies AdamW. Batches of more than
/// `microBatchTokens` tokens use gradient caching: (1) embed every text without keeping activations, (2) loss and
/// ∂L/∂embedding over the whole batch, (3) per micro-batch, recompute the forward pass with activations
/// and backpropagate that micro-batch's embedding gradients, accumulating adapter gradients. Dropout
/// masks are functions of (seed, step, layer, target, text, position), so the recomputation sees the
/// same masks as the embedding pass and the gradients equal those of one full-batch backward.
public final class LlamaTrainer {
    public let modelConfig: ModelConfig
    public let configuration: TrainingConfiguration
    public let maxSequenceLength: Int
    public private(set) var adapter: LoRAAdapter
    public private(set) var optimizer: AdamW
    /// Optimizer steps taken; the next step's index (learning rate, dropout masks).
    public private(set) var completedSteps = 0

    private let tokenEmbedding: Matrix
    private let finalNorm: [Float]
    private let blocks: [TrainableBlock]
    private let rope: RopeOp
    private let attention: AttentionOp
    private let shape: BlockShape
    private let headNorm: Bool
    /// Memory of a forward pass's activations and of a backward pass's gradients, reused every step.
    private let forwardArena = Arena()
    private let backwardArena = Arena()

    /// - Parameters:
    ///   - adapter: continue from these factors; default: a fresh adapter from `configuration.seed`.
    ///   - maxSequenceLength: longest text accepted (rows of the RoPE table).
    public init(
        weights: ModelWeights, configuration: TrainingConfiguration, adapter: LoRAAdapter? = nil, maxSequenceLength: Int = 512
    ) throws(TrainingError) {
        try configuration.validate()
        try Self.validate(weights)
        let config = weights.config
        let layout = LoRALayout(configuration: configuration.lora, model: config)
        if let adapter, adapter.layout != layout {
            throw .adapterMismatch("adapter has \(adapter.layout.parameterCount) parameters for rank \(adapter.layout.configuration.rank) "
                                   + "targets \(adapter.layout.configuration.targets.map(\.rawValue)); the configuration needs "
                                   + "\(layout.parameterCount) for rank \(layout.configuration.rank) targets \(layout.configuration.targets.map(\.rawValue))")
        }
        modelConfig = config
        self.configuration = configuration
        self.maxSequenceLength = max(1, min(maxSequenceLength, config.maxPositionEmbeddings))
        let initial = adapter ?? LoRAAdapter(layout: layout, seed: configuration.seed)
        self.adapter = initial
        optimizer = AdamW(parameterCount: layout.parameterCount, beta1: configuration.beta1, beta2: configuration.beta2,
                          epsilon: configuration.epsilon, weightDecay: configuration.weightDecay)
        tokenEmbedding = weights.tokenEmbedding
        finalNorm = weights.finalNorm
        blocks = weights.layers.map(TrainableBlock.init)
        rope = RopeOp(config: config, positions: self.maxSequenceLength)
        attention = AttentionOp(heads: config.headCount, kvHeads: config.kvHeadCount, headDim: config.headDim,
                                scale: 1 / Float(config.headDim).squareRoot())
        shape = BlockShape(hidden: config.hiddenSize, intermediate: config.intermediateSize, heads: config.headCount,
                           kvHeads: config.kvHeadCount, headDim: config.headDim, rank: configuration.lora.rank,
                           targetCount: configuration.lora.targets.count, epsilon: config.rmsNormEps)
        headNorm = weights.layers.first?.qNorm != nil
    }

    // MARK: Public operations

    /// One optimizer step on a batch of pairs.
    @discardableResult
    public func step(_ pairs: [TrainingPair]) throws(TrainingError) -> StepReport {
        var (loss, gradients) = try lossAndGradients(pairs)
        let norm = GradientClipping.clip(&gradients, maxNorm: configuration.maxGradientNorm)
        let rate = configuration.schedule.rate(atStep: completedSteps)
        try optimizer.update(&adapter.parameters, gradients: gradients, learningRate: rate)
        defer { completedSteps += 1 }
        return StepReport(step: completedSteps, loss: loss, gradientNorm: norm, learningRate: rate)
    }

    /// InfoNCE loss of the batch and its (unclipped) gradient w.r.t. the adapter's flat parameters, with
    /// the dropout masks of the next step.
    public func lossAndGradients(_ pairs: [TrainingPair]) throws(TrainingError) -> (loss: Double, gradients: [Float]) {
        guard pairs.count >= 2 else { throw .batchTooSmall(pairs: pairs.count) }
        let texts = pairs.map(\.text) + pairs.map(\.positive)
        try validate(texts)
        let pairCount = pairs.count, width = modelConfig.hiddenSize
        let microBatches = microBatches(texts)
        let loss = InfoNCE(temperature: configuration.temperature, margin: configuration.margin)
        var gradients = [Float](repeating: 0, count: adapter.layout.parameterCount)
        var value: Double = 0
        adapter.parameters.withUnsafeBufferPointer { parameters in
            gradients.withUnsafeMutableBufferPointer { gradientBuffer in
                guard let parameters = parameters.baseAddress, let gradientBuffer = gradientBuffer.baseAddress else { return }
                let context = PassContext(parameters: parameters, gradients: gradientBuffer, dropoutStep: completedSteps)
                if microBatches.count == 1 {
                    // Everything fits: one forward with activations, no recomputation.
                    let (embeddings, cache) = forward(microBatches[0], context, keep: true)
                    let result = loss.evaluate(texts: Array(embeddings[0..<(pairCount * width)]),
                                               positives: Array(embeddings[(pairCount * width)...]), count: pairCount, width: width)
                    value = result.loss
                    backward(microBatches[0], cache, embeddingGradients: result.textGradients + result.positiveGradients, context)
                    return
                }
                var embeddings: [Float] = []
                embeddings.reserveCapacity(texts.count * width)
                for batch in microBatches { embeddings += forward(batch, context, keep: false).embeddings }
                let result = loss.evaluate(texts: Array(embeddings[0..<(pairCount * width)]),
                                           positives: Array(embeddings[(pairCount * width)...]), count: pairCount, width: width)
                value = result.loss
                let allGradients = result.textGradients + result.positiveGradients
                var first = 0
                for batch in microBatches {
                    let cache = forward(batch, context, keep: true).cache
                    let slice = Array(allGradients[(first * width)..<((first + batch.textCount) * width)])
                    backward(batch, cache, embeddingGradients: slice, context)
                    first += batch.textCount
                }
            }
        }
        return (value, gradients)
    }

    /// Pooled (not normalised) embeddings of texts with the current adapter, without dropout.
    public func embed(_ texts: [TrainingText]) throws(TrainingError) -> [[Float]] {
        try validate(texts)
        let width = modelConfig.hiddenSize
        let batches = microBatches(texts)
        var result: [[Float]] = []
        adapter.parameters.withUnsafeBufferPointer { parameters in
            guard let parameters = parameters.baseAddress else { return }
            let context = PassContext(parameters: parameters, gradients: nil, dropoutStep: nil)
            for batch in batches {
                let embeddings = forward(batch, context, keep: false).embeddings
                for text in 0..<batch.textCount { result.append(Array(embeddings[(text * width)..<((text + 1) * width)])) }
            }
        }
        return result
    }

    /// Final-norm hidden states of all tokens, [tokens x hidden] (what `LlamaModel.forward` returns).
    func finalHiddenStates(_ texts: [TrainingText]) throws(TrainingError) -> [Float] {
        try validate(texts)
        let batch = PackedTexts(texts[...], firstIndex: 0)
        var states: [Float] = []
        adapter.parameters.withUnsafeBufferPointer { parameters in
            guard let parameters = parameters.baseAddress else { return }
            let cache = forward(batch, PassContext(parameters: parameters, gradients: nil, dropoutStep: nil), keep: true).cache
            states = Array(UnsafeBufferPointer(start: cache.finalStates, count: batch.tokenCount * modelConfig.hiddenSize))
        }
        return states
    }

    // MARK: Passes

    /// Consecutive texts packed up to `microBatchTokens` tokens each (a longer text alone).
    func microBatches(_ texts: [TrainingText]) -> [PackedTexts] {
        var result: [PackedTexts] = []
        var start = 0, tokens = 0
        for (index, text) in texts.enumerated() {
            if index > start, tokens + text.tokens.count > configuration.microBatchTokens {
                result.append(PackedTexts(texts[start..<index], firstIndex: start))
                start = index
                tokens = 0
            }
            tokens += text.tokens.count
        }
        if start < texts.count { result.append(PackedTexts(texts[start...], firstIndex: start)) }
        return result
    }

    /// Where a pass reads the adapter and accumulates its gradients; `dropoutStep` nil = no dropout.
    private struct PassContext {
        let parameters: UnsafePointer<Float>
        let gradients: UnsafeMutablePointer<Float>?
        let dropoutStep: Int?
    }

    /// Activations of a whole forward pass (per layer when kept, else one reused set), valid until the
    /// next forward pass.
    private final class ForwardCache {
        let layers: [BlockActivations]
        let finalResidual: UnsafeMutablePointer<Float>   // x_L [T x hidden]
        let finalInverseRMS: UnsafeMutablePointer<Float> // [T]
        let finalStates: UnsafeMutablePointer<Float>     // RMSNorm(x_L) [T x hidden]
        let scratch: PassScratch

        init(layers: [BlockActivations], tokens: Int, hidden: Int, scratch: PassScratch, separateResidual: Bool, arena: Arena) {
            self.layers = layers
            self.scratch = scratch
            finalResidual = separateResidual ? arena.take(tokens * hidden) : layers[0].input
            finalInverseRMS = arena.take(tokens)
            finalStates = arena.take(tokens * hidden)
        }
    }

    private func adapters(layer: Int, _ context: PassContext) -> BlockAdapters {
        let lora = configuration.lora
        var factors = [LoRAFactors?](repeating: nil, count: LoRATarget.allCases.count)
        var hiddenSlots = [Int](repeating: 0, count: LoRATarget.allCases.count)
        for (slotIndex, target) in lora.targets.enumerated() {
            guard let slot = adapter.layout.slot(layer: layer, target: target) else { continue }
            let dropout = context.dropoutStep.flatMap { step in
                lora.dropout > 0
                    ? DropoutMask(probability: lora.dropout,
                                  stream: DropoutMask.stream(seed: configuration.seed, step: step, layer: layer, target: target))
                    : nil
            }
            factors[target.order] = LoRAFactors(
                a: context.parameters + slot.aOffset, b: context.parameters + slot.bOffset,
                gradientA: context.gradients.map { $0 + slot.aOffset }, gradientB: context.gradients.map { $0 + slot.bOffset },
                rank: slot.rank, scaling: lora.scaling, dropout: dropout)
            hiddenSlots[target.order] = slotIndex
        }
        return BlockAdapters(factorsByTarget: factors, hiddenSlotByTarget: hiddenSlots)
    }

    /// Runs the stack and pools; `keep` saves every layer's activations for `backward`.
    private func forward(_ batch: PackedTexts, _ context: PassContext, keep: Bool) -> (embeddings: [Float], cache: ForwardCache) {
        let tokens = batch.tokenCount, hidden = modelConfig.hiddenSize
        let arena = forwardArena
        arena.reset()
        let layers: [BlockActivations]
        if keep {
            let probabilityCount = attention.probabilityOffsets(batch.offsets).last ?? 0
            layers = blocks.map { _ in
                BlockActivations(shape: shape, batch: batch, probabilityCount: probabilityCount, headNorm: headNorm, arena: arena)
            }
        } else {
            layers = [BlockActivations(shape: shape, batch: batch, probabilityCount: batch.maxLength * batch.maxLength,
                                       headNorm: headNorm, arena: arena)]
        }
        let cache = ForwardCache(
            layers: layers, tokens: tokens, hidden: hidden, scratch: PassScratch(shape: shape, batch: batch, arena: arena),
            separateResidual: keep, arena: arena)

        tokenEmbedding.data.withUnsafeBufferPointer { table in
            guard let table = table.baseAddress else { return }
            for (row, token) in batch.tokens.enumerated() {
                (layers[0].input + row * hidden).update(from: table + Int(token) * hidden, count: hidden)
            }
        }
        for (index, block) in blocks.enumerated() {
            let activations = keep ? layers[index] : layers[0]
            let output = keep ? (index + 1 < layers.count ? layers[index + 1].input : cache.finalResidual) : activations.input
            block.forward(
                activations, input: activations.input, middle: keep ? activations.middle : activations.input, output: output,
                batch: batch, shape: shape, adapters: adapters(layer: index, context), rope: rope, attention: attention,
                keepProbabilities: keep, scratch: cache.scratch)
        }
        finalNorm.withUnsafeBufferPointer { w in
            guard let w = w.baseAddress else { return }
            RMSNormOp.forward(cache.finalResidual, weight: w, epsilon: shape.epsilon, rows: tokens, width: hidden, stride: hidden,
                              into: cache.finalStates, inverseRMS: cache.finalInverseRMS)
        }
        var embeddings = [Float](repeating: 0, count: batch.textCount * hidden)
        embeddings.withUnsafeMutableBufferPointer { out in
            guard let out = out.baseAddress else { return }
            for text in 0..<batch.textCount {
                let start = batch.offsets[text]
                PoolingOp.forward(cache.finalStates + start * hidden, width: hidden, length: batch.offsets[text + 1] - start,
                                  pooling: configuration.pooling, pooledRows: batch.pooledRows[text], into: out + text * hidden)
            }
        }
        return (embeddings, cache)
    }

    /// Backpropagates ∂L/∂embedding ([texts x hidden]) through pooling, the final norm and every block.
    private func backward(_ batch: PackedTexts, _ cache: ForwardCache, embeddingGradients: [Float], _ context: PassContext) {
        let tokens = batch.tokenCount, hidden = modelConfig.hiddenSize
        backwardArena.reset()
        let scratch = BackwardScratch(shape: shape, batch: batch, arena: backwardArena)
        let stateGradient = backwardArena.take(tokens * hidden), gradient = backwardArena.take(tokens * hidden)
        stateGradient.update(repeating: 0, count: tokens * hidden)
        embeddingGradients.withUnsafeBufferPointer { g in
            guard let g = g.baseAddress else { return }
            for text in 0..<batch.textCount {
                let start = batch.offsets[text]
                PoolingOp.backward(embeddingGradient: g + text * hidden, width: hidden, length: batch.offsets[text + 1] - start,
                                   pooling: configuration.pooling, pooledRows: batch.pooledRows[text],
                                   into: stateGradient + start * hidden)
            }
        }
        finalNorm.withUnsafeBufferPointer { w in
            guard let w = w.baseAddress else { return }
            RMSNormOp.backward(input: cache.finalResidual, weight: w, inverseRMS: cache.finalInverseRMS, outputGradient: stateGradient,
                               rows: tokens, width: hidden, stride: hidden, into: gradient, accumulate: false)
        }
        for index in blocks.indices.reversed() {
            blocks[index].backward(
                cache.layers[index], gradient: gradient, needsInputGradient: index > 0, batch: batch, shape: shape,
                adapters: adapters(layer: index, context), rope: rope, attention: attention, scratch: cache.scratch,
                gradients: scratch)
        }
    }

    // MARK: Validation

    private func validate(_ texts: [TrainingText]) throws(TrainingError) {
        for (index, text) in texts.enumerated() {
            guard !text.tokens.isEmpty else { throw .emptyText(index: index) }
            guard text.tokens.count <= maxSequenceLength else {
                throw .textTooLong(text: index, length: text.tokens.count, limit: maxSequenceLength)
            }
            if let position = text.tokens.firstIndex(where: { $0 < 0 || Int($0) >= modelConfig.vocabSize }) {
                throw .tokenOutOfRange(text: index, position: position, token: text.tokens[position], vocabSize: modelConfig.vocabSize)
            }
        }
    }

    /// Shapes the raw-pointer passes rely on: the engine's own checks, plus what training adds
    /// (at least one layer; q/k norms in every layer or none, since the layout is shared).
    private static func validate(_ weights: ModelWeights) throws(TrainingError) {
        do { try LlamaModel.validate(weights) } catch { throw .invalidModel(error.description) }
        guard !weights.layers.isEmpty else { throw .invalidModel("the model has no layers") }
        let headNorm = weights.layers[0].qNorm != nil
        guard weights.layers.allSatisfy({ ($0.qNorm != nil) == headNorm }) else {
            throw .invalidModel("attn_q_norm/attn_k_norm must be present in every layer or in none")
        }
    }
}
