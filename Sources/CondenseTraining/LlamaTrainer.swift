import CondenseEmbedding
import CondenseModel
import CondenseTensor
import Dispatch

/// Contrastive LoRA fine-tuning of a frozen Llama-family decoder (Llama, SmolLM, Qwen2, Qwen3).
///
/// A step embeds all 2B texts of B pairs, takes InfoNCE over the B x B cosine matrix, backpropagates to
/// the adapters only, clips the global gradient norm and applies AdamW. Batches of more than
/// `microBatchTokens` tokens use gradient caching: (1) embed every text without keeping activations, (2) loss and
/// ∂L/∂embedding over the whole batch, (3) per micro-batch, recompute the forward pass with activations
/// and backpropagate that micro-batch's embedding gradients, accumulating adapter gradients. Dropout
/// masks are functions of (seed, step, layer, target, text, position), so the recomputation sees the
/// same masks as the embedding pass and the gradients equal those of one full-batch backward.
///
/// Each micro-batch is split into one part per OpenBLAS thread (consecutive texts, about equal tokens),
/// and the parts' passes run side by side, each with single-threaded GEMMs: the element-wise work runs on
/// every core too, and no thread waits for another after each GEMM. While they run, OpenBLAS is set to one
/// thread process-wide (restored afterwards; see `SingleThreadedBLAS`).
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
    /// One per thread; each runs one part of a micro-batch.
    private let workers: [PassWorker]
    private var stepGradients: [Float]

    /// - Parameters:
    ///   - adapter: continue from these factors; default: a fresh adapter from `configuration.seed`.
    ///   - maxSequenceLength: longest text accepted (rows of the RoPE table).
    public convenience init(
        weights: ModelWeights, configuration: TrainingConfiguration, adapter: LoRAAdapter? = nil, maxSequenceLength: Int = 512
    ) throws(TrainingError) {
        try self.init(weights: weights, configuration: configuration, adapter: adapter, maxSequenceLength: maxSequenceLength,
                      threads: BLASRuntime.threads)
    }

    /// - Parameter threads: parts each micro-batch is split into, run side by side (public init: OpenBLAS's threads).
    init(
        weights: ModelWeights, configuration: TrainingConfiguration, adapter: LoRAAdapter? = nil, maxSequenceLength: Int = 512,
        threads: Int
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
        stepGradients = [Float](repeating: 0, count: layout.parameterCount)
        workers = (0..<max(1, threads)).map { PassWorker(gradientCount: $0 == 0 ? 0 : layout.parameterCount) }
    }

    // MARK: Public operations

    /// One optimizer step on a batch of pairs.
    @discardableResult
    public func step(_ pairs: [TrainingPair]) throws(TrainingError) -> StepReport {
        // The step's gradient buffer is reused: a fresh 4-bytes-per-parameter array costs a page fault per 4 KB.
        stepGradients.withUnsafeMutableBufferPointer { buffer in
            if let base = buffer.baseAddress { Kernels.zero(base, count: buffer.count) }
        }
        let loss = try accumulateLossAndGradients(pairs, into: &stepGradients)
        let norm = GradientClipping.clip(&stepGradients, maxNorm: configuration.maxGradientNorm)
        let rate = configuration.schedule.rate(atStep: completedSteps)
        try optimizer.update(&adapter.parameters, gradients: stepGradients, learningRate: rate)
        defer { completedSteps += 1 }
        return StepReport(step: completedSteps, loss: loss, gradientNorm: norm, learningRate: rate)
    }

    /// Continues a saved run: the adapter, the optimizer's state and the number of steps taken (which
    /// set the next step's learning rate and dropout masks), so the following steps equal the original run's.
    public func restore(adapter: LoRAAdapter, optimizer: AdamW, completedSteps: Int) throws(TrainingError) {
        guard adapter.layout == self.adapter.layout else {
            throw .adapterMismatch("the saved adapter's layout differs from this configuration's")
        }
        guard optimizer.firstMoment.count == adapter.layout.parameterCount, completedSteps >= 0 else {
            throw .adapterMismatch("optimizer state for \(optimizer.firstMoment.count) parameters, the adapter has \(adapter.layout.parameterCount)")
        }
        self.adapter = adapter
        self.optimizer = optimizer
        self.completedSteps = completedSteps
    }

    /// InfoNCE loss of the batch and its (unclipped) gradient w.r.t. the adapter's flat parameters, with
    /// the dropout masks of the next step.
    public func lossAndGradients(_ pairs: [TrainingPair]) throws(TrainingError) -> (loss: Double, gradients: [Float]) {
        var gradients = [Float](repeating: 0, count: adapter.layout.parameterCount)
        let loss = try accumulateLossAndGradients(pairs, into: &gradients)
        return (loss, gradients)
    }

    /// The loss of `lossAndGradients`; its gradient is added to `gradients` (one per parameter).
    private func accumulateLossAndGradients(_ pairs: [TrainingPair], into gradients: inout [Float]) throws(TrainingError) -> Double {
        guard pairs.count >= 2 else { throw .batchTooSmall(pairs: pairs.count) }
        let texts = pairs.map(\.text) + pairs.map(\.positive)
        try validate(texts)
        let pairCount = pairs.count, width = modelConfig.hiddenSize, parameterCount = adapter.layout.parameterCount
        let microBatches = microBatchRanges(texts).map { parts(of: texts, $0) }
        let partCount = microBatches.map(\.count).max() ?? 1
        let loss = InfoNCE(temperature: configuration.temperature, margin: configuration.margin)
        var embeddings = [Float](repeating: 0, count: texts.count * width)
        var value: Double = 0
        adapter.parameters.withUnsafeBufferPointer { parameters in
            gradients.withUnsafeMutableBufferPointer { gradientBuffer in
                embeddings.withUnsafeMutableBufferPointer { embeddingBuffer in
                    guard let parameters = parameters.baseAddress, let gradientBuffer = gradientBuffer.baseAddress,
                          let embeddingBase = embeddingBuffer.baseAddress else { return }
                    // The first part accumulates into the result, the others into their workers' buffers (summed below).
                    let contexts = (0..<partCount).map { index in
                        let accumulator = workers[index].gradients ?? gradientBuffer
                        if index > 0 { Kernels.zero(accumulator, count: parameterCount) }
                        return PassContext(parameters: parameters, gradients: accumulator, dropoutStep: completedSteps)
                    }
                    func embeddingGradients() -> [Float] {
                        let result = loss.evaluate(texts: Array(embeddingBuffer[0..<(pairCount * width)]),
                                                   positives: Array(embeddingBuffer[(pairCount * width)...]), count: pairCount, width: width)
                        value = result.loss
                        return result.textGradients + result.positiveGradients
                    }
                    if microBatches.count == 1 {
                        // Everything fits: one forward with activations, no recomputation.
                        runParts(microBatches[0]) { part, worker, index in
                            worker.cache = forward(part, contexts[index], worker, keep: true, embeddings: embeddingBase + part.firstIndex * width)
                        }
                        let allGradients = embeddingGradients()
                        runParts(microBatches[0]) { part, worker, index in
                            guard let cache = worker.cache else { return }
                            backward(part, cache, worker, embeddingGradients: allGradients, contexts[index])
                        }
                    } else {
                        for parts in microBatches {
                            runParts(parts) { part, worker, index in
                                _ = forward(part, contexts[index], worker, keep: false, embeddings: embeddingBase + part.firstIndex * width)
                            }
                        }
                        let allGradients = embeddingGradients()
                        for parts in microBatches {
                            runParts(parts) { part, worker, index in
                                let cache = forward(part, contexts[index], worker, keep: true, embeddings: nil)
                                backward(part, cache, worker, embeddingGradients: allGradients, contexts[index])
                            }
                        }
                    }
                    let accumulators = workers.prefix(partCount).dropFirst().compactMap(\.gradients)
                    guard !accumulators.isEmpty else { return }
                    nonisolated(unsafe) let (result, parts) = (gradientBuffer, accumulators)
                    Kernels.forEachChunk(count: parameterCount) { range in
                        for part in parts { VectorMath.add(part + range.lowerBound, into: result + range.lowerBound, count: range.count) }
                    }
                }
            }
        }
        return value
    }

    /// Pooled (not normalised) embeddings of texts with the current adapter, without dropout.
    public func embed(_ texts: [TrainingText]) throws(TrainingError) -> [[Float]] {
        try validate(texts)
        let width = modelConfig.hiddenSize
        var embeddings = [Float](repeating: 0, count: texts.count * width)
        adapter.parameters.withUnsafeBufferPointer { parameters in
            embeddings.withUnsafeMutableBufferPointer { output in
                guard let parameters = parameters.baseAddress, let output = output.baseAddress else { return }
                let context = PassContext(parameters: parameters, gradients: nil, dropoutStep: nil)
                for range in microBatchRanges(texts) {
                    runParts(parts(of: texts, range)) { part, worker, _ in
                        _ = forward(part, context, worker, keep: false, embeddings: output + part.firstIndex * width)
                    }
                }
            }
        }
        return (0..<texts.count).map { Array(embeddings[($0 * width)..<(($0 + 1) * width)]) }
    }

    /// Final-norm hidden states of all tokens, [tokens x hidden] (what `LlamaModel.forward` returns).
    func finalHiddenStates(_ texts: [TrainingText]) throws(TrainingError) -> [Float] {
        try validate(texts)
        let batch = PackedTexts(texts[...], firstIndex: 0)
        var states: [Float] = []
        adapter.parameters.withUnsafeBufferPointer { parameters in
            guard let parameters = parameters.baseAddress else { return }
            let context = PassContext(parameters: parameters, gradients: nil, dropoutStep: nil)
            let cache = forward(batch, context, workers[0], keep: true, embeddings: nil)
            states = Array(UnsafeBufferPointer(start: cache.finalStates, count: batch.tokenCount * modelConfig.hiddenSize))
        }
        return states
    }

    // MARK: Passes

    /// Consecutive texts packed up to `microBatchTokens` tokens each (a longer text alone).
    func microBatches(_ texts: [TrainingText]) -> [PackedTexts] {
        microBatchRanges(texts).map { PackedTexts(texts[$0], firstIndex: $0.lowerBound) }
    }

    /// Text index ranges of `microBatches`.
    private func microBatchRanges(_ texts: [TrainingText]) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start = 0, tokens = 0
        for (index, text) in texts.enumerated() {
            if index > start, tokens + text.tokens.count > configuration.microBatchTokens {
                result.append(start..<index)
                start = index
                tokens = 0
            }
            tokens += text.tokens.count
        }
        if start < texts.count { result.append(start..<texts.count) }
        return result
    }

    /// The texts of one micro-batch cut into at most one part per worker: consecutive texts, each part
    /// ending at the text whose middle is nearest its share of the tokens.
    func parts(of texts: [TrainingText], _ range: Range<Int>) -> [PackedTexts] {
        let count = min(workers.count, range.count)
        guard count > 1 else { return count == 1 ? [PackedTexts(texts[range], firstIndex: range.lowerBound)] : [] }
        let total = texts[range].reduce(0) { $0 + $1.tokens.count }
        var cuts = [range.lowerBound]
        var index = range.lowerBound, tokens = 0
        for part in 1..<count {
            let target = total * part / count
            // At least one text per part, and one left for every later part.
            while index < range.upperBound - (count - part),
                  index == cuts[cuts.count - 1] || 2 * tokens + texts[index].tokens.count <= 2 * target {
                tokens += texts[index].tokens.count
                index += 1
            }
            cuts.append(index)
        }
        cuts.append(range.upperBound)
        return (0..<count).map { PackedTexts(texts[cuts[$0]..<cuts[$0 + 1]], firstIndex: cuts[$0]) }
    }

    /// Runs `body(part, worker, index)` for each part with its own worker: side by side when there are
    /// several, with OpenBLAS single-threaded meanwhile.
    private func runParts(_ parts: [PackedTexts], _ body: (PackedTexts, PassWorker, Int) -> Void) {
        guard parts.count > 1 else {
            if let part = parts.first { body(part, workers[0], 0) }
            return
        }
        // Each part uses only its own worker and its own rows of shared outputs; concurrentPerform joins before returning.
        nonisolated(unsafe) let body = body, workers = workers
        SingleThreadedBLAS.run {
            DispatchQueue.concurrentPerform(iterations: parts.count) { index in body(parts[index], workers[index], index) }
        }
    }

    /// Where a pass reads the adapter and accumulates its gradients; `dropoutStep` nil = no dropout.
    private struct PassContext {
        let parameters: UnsafePointer<Float>
        let gradients: UnsafeMutablePointer<Float>?
        let dropoutStep: Int?
    }

    /// One thread's memory: its forward activations (valid until its next forward), its backward
    /// gradients, and for every worker but the first an adapter-gradient accumulator, summed into the
    /// first's after the pass (its pages are touched only when a step uses the worker).
    private final class PassWorker {
        let forwardArena = Arena()
        let backwardArena = Arena()
        var cache: ForwardCache?
        let gradients: UnsafeMutablePointer<Float>?

        init(gradientCount: Int) { gradients = gradientCount > 0 ? .allocate(capacity: gradientCount) : nil }

        deinit { gradients?.deallocate() }
    }

    /// Activations of a whole forward pass (per layer when kept, else one reused set), valid until the
    /// worker's next forward pass.
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

    /// Runs the stack and pools into `embeddings` ([texts x hidden], when given); `keep` saves every
    /// layer's activations for `backward`.
    private func forward(
        _ batch: PackedTexts, _ context: PassContext, _ worker: PassWorker, keep: Bool, embeddings: UnsafeMutablePointer<Float>?
    ) -> ForwardCache {
        let tokens = batch.tokenCount, hidden = modelConfig.hiddenSize
        let arena = worker.forwardArena
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
        if let embeddings {
            for text in 0..<batch.textCount {
                let start = batch.offsets[text]
                PoolingOp.forward(cache.finalStates + start * hidden, width: hidden, length: batch.offsets[text + 1] - start,
                                  pooling: configuration.pooling, pooledRows: batch.pooledRows[text], into: embeddings + text * hidden)
            }
        }
        return cache
    }

    /// Backpropagates ∂L/∂embedding (rows of the whole step's [texts x hidden]; the batch reads its own)
    /// through pooling, the final norm and every block.
    private func backward(
        _ batch: PackedTexts, _ cache: ForwardCache, _ worker: PassWorker, embeddingGradients: [Float], _ context: PassContext
    ) {
        let tokens = batch.tokenCount, hidden = modelConfig.hiddenSize
        let arena = worker.backwardArena
        arena.reset()
        let scratch = BackwardScratch(shape: shape, batch: batch, arena: arena)
        let stateGradient = arena.take(tokens * hidden), gradient = arena.take(tokens * hidden)
        stateGradient.update(repeating: 0, count: tokens * hidden)
        embeddingGradients.withUnsafeBufferPointer { all in
            guard let g = all.baseAddress.map({ $0 + batch.firstIndex * hidden }) else { return }
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
