import CondenseModel
import CondenseTensor
import Testing

/// Packing: a sequence's states must not depend on what else is in the batch.
@Suite struct ForwardBatchTests {
    let model: LlamaModel
    let config = TinyModels.config(.llama)

    init() throws {
        model = try LlamaModel(weights: TinyModels.weights(config, seed: 42))
    }

    /// Alone vs packed with sequences of other lengths before and after it: bit-identical on every CPU (the
    /// packed-weight kernels sum each row the same way whatever the batch; norms, RoPE and attention are
    /// per row or per sequence anyway), including the 1-token sequence alone, a one-row product.
    @Test(arguments: [(2, 23), (3, 1)])
    func sequenceAloneEqualsSequenceInPackedBatch(position: Int, length: Int) throws {
        let batch = [
            TinyModels.tokens(count: 7, vocabSize: config.vocabSize, seed: 6),
            TinyModels.tokens(count: 50, vocabSize: config.vocabSize, seed: 7),
            TinyModels.tokens(count: 23, vocabSize: config.vocabSize, seed: 5),
            TinyModels.tokens(count: 1, vocabSize: config.vocabSize, seed: 8),
        ]
        let alone = try model.forward([batch[position]])
        let packed = try model.forward(batch)
        #expect(packed.offsets == [0, 7, 57, 80, 81])
        let expected = alone.states(of: 0), actual = packed.states(of: position)
        #expect(expected.count == length * config.hiddenSize && actual.count == expected.count)
        let scale = (expected.reduce(0) { $0 + $1 * $1 } / Float(expected.count)).squareRoot()
        let maxError = zip(expected, actual).map { abs($0 - $1) }.max() ?? 0
        #expect(actual.map(\.bitPattern) == expected.map(\.bitPattern), "max difference \(maxError) at activation RMS \(scale)")
    }

    @Test func emptyBatchAndEmptySequences() throws {
        let none = try model.forward([])
        #expect(none.hidden.rows == 0 && none.offsets == [0] && none.sequenceCount == 0)

        let mixed = try model.forward([[], [3, 4, 5], []], options: ForwardOptions(returnLastLayerAttention: true))
        #expect(mixed.offsets == [0, 0, 3, 3])
        #expect(mixed.states(of: 0).isEmpty && mixed.states(of: 2).isEmpty)
        let alone = try model.forward([[3, 4, 5]])
        #expect(Array(mixed.states(of: 1)) == Array(alone.states(of: 0)))
        let maps = try #require(mixed.lastLayerAttention)
        #expect(maps.map(\.rows) == [0, config.headCount * 3, 0])
    }

    @Test func attentionMapsAreCausalDistributions() throws {
        let length = 11
        let output = try model.forward(
            [TinyModels.tokens(count: length, vocabSize: config.vocabSize, seed: 9)],
            options: ForwardOptions(returnLastLayerAttention: true))
        let map = try #require(output.lastLayerAttention?.first)
        #expect(map.rows == config.headCount * length && map.cols == length)
        for row in 0..<map.rows {
            let query = row % length
            let values = map.data[(row * length)..<((row + 1) * length)]
            #expect(abs(values.reduce(0, +) - 1) < 1e-5)
            #expect(values.dropFirst(query + 1).allSatisfy { $0 == 0 })
        }
        // The first position can only attend to itself.
        #expect(map.data[0] == 1)
    }
}
