import CondenseEmbedding
import CondenseModel
import CondenseTensor

/// Embeds texts with one prompt and pools several ways from a single forward pass.
///
/// `eos` pooling runs the prompted tokens followed by the EOS id. Attention is causal, so the
/// states of the first L positions of that sequence are the states of the prompted tokens alone:
/// `mean`, `weighted-mean` and `last` over those L rows equal what `Embedder` computes without the
/// EOS token (up to batch-composition rounding). One pass therefore serves a whole pooling grid.
/// Pooling covers the whole prompted input (no `excludePrompt`); vectors are not normalized.
public enum SharedPassEmbedding {
    /// One [texts x hidden] matrix per entry of `poolings`, rows in input order.
    public static func embed(
        _ texts: [String], embedder: Embedder, prompt: PromptTemplate, poolings: [Pooling],
        maxTokens: Int = EmbeddingOptions.defaultMaxTokens, progress: ((Int) -> Void)? = nil
    ) throws(EvaluationError) -> [Matrix] {
        guard !poolings.isEmpty else { throw .tooFewItems(what: "poolings", count: 0, required: 1) }
        let appendsEOS = poolings.contains(.eos)
        let options = EmbeddingOptions(prompt: prompt, pooling: appendsEOS ? .eos : .mean, maxTokens: maxTokens)
        var prepared: [PreparedText] = []
        prepared.reserveCapacity(texts.count)
        for (index, text) in texts.enumerated() {
            do {
                prepared.append(try embedder.prepare(text, options: options))
            } catch {
                throw .embeddingFailed(item: index, reason: error.description)
            }
        }

        let width = embedder.dimensions
        var outputs = poolings.map { _ in Matrix(zeros: texts.count, width) }
        var finished = 0
        for batch in BatchPlanner.plan(lengths: prepared.map(\.tokens.count), tokenBudget: embedder.tokenBudget) {
            let output: ForwardOutput
            do {
                output = try embedder.model.forward(batch.map { prepared[$0].tokens })
            } catch {
                throw .embeddingFailed(item: batch.first ?? 0, reason: error.description)
            }
            for (position, item) in batch.enumerated() {
                let states = output.states(of: position)
                let fullLength = output.length(of: position)
                let promptedLength = appendsEOS ? fullLength - 1 : fullLength
                let promptedStates = states.prefix(promptedLength * width)
                for (slot, pooling) in poolings.enumerated() {
                    let vector = pooling == .eos
                        ? PoolingMath.pool(states, width: width, pooling: .eos, pooledRows: 0..<fullLength)
                        : PoolingMath.pool(promptedStates, width: width, pooling: pooling, pooledRows: 0..<promptedLength)
                    let base = item * width
                    for j in 0..<width { outputs[slot].data[base + j] = vector[j] }
                }
            }
            finished += batch.count
            progress?(finished)
        }
        return outputs
    }
}
