import CondenseModel
import CondenseTensor
import Testing

/// Malformed models and inputs fail with errors that name the offending thing.
@Suite struct ForwardValidationTests {
    let config = TinyModels.config(.llama)

    @Test func rejectsTokensOutsideTheVocabulary() throws {
        let model = try LlamaModel(weights: TinyModels.weights(config, seed: 1))
        #expect(throws: ForwardError.tokenOutOfRange(sequence: 1, position: 2, token: 61, vocabSize: 61)) {
            try model.forward([[1, 2], [3, 4, 61]])
        }
        #expect(throws: ForwardError.tokenOutOfRange(sequence: 0, position: 0, token: -1, vocabSize: 61)) {
            try model.forward([[-1]])
        }
    }

    @Test func rejectsSequencesLongerThanTheRotaryTable() throws {
        let model = try LlamaModel(weights: TinyModels.weights(config, seed: 1), maxSequenceLength: 8)
        #expect(model.maxSequenceLength == 8)
        #expect(throws: ForwardError.sequenceTooLong(sequence: 0, length: 9, limit: 8)) {
            try model.forward([[Int32](repeating: 1, count: 9)])
        }
        let error = ForwardError.sequenceTooLong(sequence: 0, length: 9, limit: 8)
        #expect(error.description.contains("9 tokens") && error.description.contains("at most 8"))
    }

    @Test func rejectsTensorsWithWrongShapes() {
        var weights = TinyModels.weights(config, seed: 1)
        weights.layers[1].wk = Matrix(zeros: 3, config.hiddenSize)
        #expect(throws: LlamaModelError.shapeMismatch(tensor: "blk.1.attn_k", expected: "32x64", actual: "3x64")) {
            try LlamaModel(weights: weights)
        }
        weights = TinyModels.weights(config, seed: 1)
        weights.layers[0].qBias = [1, 2, 3]
        #expect(throws: LlamaModelError.shapeMismatch(tensor: "blk.0.attn_q.bias", expected: "64", actual: "3")) {
            try LlamaModel(weights: weights)
        }
    }

    @Test func rejectsInconsistentConfiguration() {
        var weights = TinyModels.weights(config, seed: 1)
        weights.config.kvHeadCount = 3  // does not divide 4 query heads
        #expect(throws: LlamaModelError.self) { try LlamaModel(weights: weights) }
        weights = TinyModels.weights(config, seed: 1)
        weights.layers.removeLast()
        #expect(throws: LlamaModelError.self) { try LlamaModel(weights: weights) }
    }
}
