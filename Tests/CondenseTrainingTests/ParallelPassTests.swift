import CondenseModel
import CondenseTensor
import Dispatch
import Testing
@testable import CondenseTraining

/// Micro-batches split into parts that run side by side: the split, and results that differ from one
/// thread's only in the order of float sums.
@Suite struct ParallelPassTests {
    static func texts(_ lengths: [Int]) -> [TrainingText] {
        lengths.map { TrainingText(tokens: [Int32](repeating: 1, count: $0)) }
    }

    @Test func partsAreConsecutiveNonEmptyAndBalancedByTokens() throws {
        let weights = TinyModel.weights(), configuration = TrainerTests.configuration()
        let texts = Self.texts([4, 5, 12, 3, 3, 3])
        func parts(threads: Int, _ range: Range<Int>) throws -> [[Int]] {
            try LlamaTrainer(weights: weights, configuration: configuration, threads: threads).parts(of: texts, range)
                .map { Array($0.firstIndex..<($0.firstIndex + $0.textCount)) }
        }
        // 30 tokens: halves of 21 | 9 (text 2's middle is at 15), thirds of 9 | 12 | 9.
        #expect(try parts(threads: 2, 0..<6) == [[0, 1, 2], [3, 4, 5]])
        #expect(try parts(threads: 3, 0..<6) == [[0, 1], [2], [3, 4, 5]])
        // A part per text at most, whatever the token counts; global indices kept.
        #expect(try parts(threads: 4, 2..<4) == [[2], [3]])
        #expect(try parts(threads: 1, 1..<5) == [[1, 2, 3, 4]])
        #expect(try parts(threads: 2, 3..<3).isEmpty)
        let split = try LlamaTrainer(weights: weights, configuration: configuration, threads: 2).parts(of: texts, 0..<6)
        #expect(split[1].offsets == [0, 3, 6, 9])
        #expect(split[1].rowKeys[0] == DropoutMask.rowKey(text: 3, position: 0))
    }

    @Test(arguments: [1024, 20])
    func lossGradientsAndEmbeddingsDoNotDependOnTheThreadCount(microBatchTokens: Int) throws {
        let weights = TinyModel.weights()
        let configuration = TrainerTests.configuration(dropout: 0.1, microBatchTokens: microBatchTokens)
        let adapter = try TrainerTests.adapter(configuration, model: weights.config)
        let pairs = TinyModel.pairs(8, seed: 61)
        let single = try LlamaTrainer(weights: weights, configuration: configuration, adapter: adapter, threads: 1)
        let (referenceLoss, referenceGradients) = try single.lossAndGradients(pairs)
        let referenceEmbeddings = try single.embed(pairs.map(\.text))
        let norm = referenceGradients.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        #expect(norm > 0)
        for threads in [2, 3] {
            let trainer = try LlamaTrainer(weights: weights, configuration: configuration, adapter: adapter, threads: threads)
            let (loss, gradients) = try trainer.lossAndGradients(pairs)
            #expect(abs(loss - referenceLoss) < 1e-6 * abs(referenceLoss))
            let difference = zip(gradients, referenceGradients).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            #expect(difference / norm < 1e-5, "\(threads) threads: relative gradient difference \(difference / norm)")
            let embeddings = try trainer.embed(pairs.map(\.text))
            #expect(zip(embeddings, referenceEmbeddings).allSatisfy { zip($0, $1).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) } })
        }
    }

    @Test func overlappingSingleThreadedSectionsRestoreTheThreadCount() {
        let before = BLASRuntime.threads
        SingleThreadedBLAS.run {
            #expect(BLASRuntime.threads == 1)
            SingleThreadedBLAS.run { #expect(BLASRuntime.threads == 1) }
            #expect(BLASRuntime.threads == 1)
        }
        #expect(BLASRuntime.threads == before)
        // Sections entered and left by several threads in any interleaving.
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            SingleThreadedBLAS.run { #expect(BLASRuntime.threads == 1) }
        }
        #expect(BLASRuntime.threads == before)
    }
}
