import Testing
@testable import CondenseTraining

struct PairBatcherTests {
    /// Pairs drawn from a small pool of texts, so that many share a text (some with extra whitespace).
    private func overlappingPairs(_ count: Int, pool: Int, seed: UInt64) -> [TextPair] {
        var random = TestRandom(seed: seed)
        func text() -> String {
            let id = Int.random(in: 0..<pool, using: &random)
            return Bool.random(using: &random) ? "text \(id)" : "  text   \(id) "
        }
        return (0..<count).map { _ in TextPair(text: text(), positive: text()) }
    }

    private func check(_ pairs: [TextPair], batchSize: Int, seed: UInt64, epochs: Int = 3) {
        let batcher = PairBatcher(pairs: pairs, batchSize: batchSize, seed: seed)
        for epoch in 0..<epochs {
            let batches = batcher.batches(epoch: epoch)
            #expect(batches.flatMap { $0 }.sorted() == Array(pairs.indices), "every pair exactly once per epoch")
            for batch in batches {
                #expect(batch.count >= 2 && batch.count <= batchSize + 1)
                var seen = Set<String>()
                for index in batch {
                    let sides = Set([pairs[index].text, pairs[index].positive].map(PairBatcher.normalized))
                    #expect(seen.isDisjoint(with: sides), "a text occurs twice in a batch")
                    seen.formUnion(sides)
                }
            }
        }
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func batchesNeverRepeatATextAndCoverEveryPair(seed: UInt64) {
        check(overlappingPairs(300, pool: 400, seed: seed), batchSize: 16, seed: seed)
        check(overlappingPairs(60, pool: 1_000, seed: seed), batchSize: 7, seed: seed)
    }

    @Test func fullBatchesUntilTheEndOfTheEpoch() {
        let pairs = (0..<10).map { TextPair(text: "a\($0)", positive: "b\($0)") }
        let batches = PairBatcher(pairs: pairs, batchSize: 4, seed: 9).batches(epoch: 0)
        #expect(batches.map(\.count) == [4, 4, 2])
        // A lone last pair takes a partner from an earlier batch.
        #expect(PairBatcher(pairs: Array(pairs.prefix(9)), batchSize: 4, seed: 9).batches(epoch: 0).map(\.count) == [4, 3, 2])
        #expect(PairBatcher(pairs: Array(pairs.prefix(3)), batchSize: 2, seed: 9).batches(epoch: 0).map(\.count) == [3])
    }

    @Test func conflictingPairsWaitForALaterBatch() {
        // Pairs 0-2 share "same"; with whitespace differences only.
        let pairs = [
            TextPair(text: "same", positive: "x0"), TextPair(text: "y1", positive: " same "), TextPair(text: "same\t", positive: "z2"),
            TextPair(text: "a", positive: "b"), TextPair(text: "c", positive: "d"), TextPair(text: "e", positive: "f"),
        ]
        let batches = PairBatcher(pairs: pairs, batchSize: 3, seed: 4).batches(epoch: 0)
        for batch in batches { #expect(batch.filter { $0 < 3 }.count <= 1) }
        #expect(batches.flatMap { $0 }.sorted() == Array(0..<6))
    }

    @Test func sameSeedSameBatchesAndEachEpochShufflesAnew() {
        let pairs = overlappingPairs(200, pool: 300, seed: 5)
        let batcher = PairBatcher(pairs: pairs, batchSize: 10, seed: 11)
        #expect(batcher.batches(epoch: 0) == PairBatcher(pairs: pairs, batchSize: 10, seed: 11).batches(epoch: 0))
        #expect(batcher.batches(epoch: 0) != batcher.batches(epoch: 1))
        #expect(batcher.batches(epoch: 0) != PairBatcher(pairs: pairs, batchSize: 10, seed: 12).batches(epoch: 0))
    }

    @Test func identicalSidesOfOnePairAreAllowed() {
        let pairs = (0..<6).map { TextPair(text: "t\($0)", positive: "t\($0) ") }
        #expect(PairBatcher(pairs: pairs, batchSize: 6, seed: 1).batches(epoch: 0).map(\.count) == [6])
    }
}

struct AugmentationTests {
    private let sentence = "the quick brown fox jumps over the lazy dog near the quiet river bank"

    @Test func offByDefault() {
        #expect(!NoiseAugmentation().isEnabled)
        #expect(NoiseAugmentation.off.apply(to: "  keeps   spacing\n", seed: 3) == "  keeps   spacing\n")
        #expect(FineTuneOptions(outputDirectory: "out").augmentation == .off)
    }

    @Test func deterministicForASeed() {
        let noise = NoiseAugmentation(wordDeletion: 0.2, wordSwap: 0.2, characterNoise: 0.1)
        #expect(noise.apply(to: sentence, seed: 7) == noise.apply(to: sentence, seed: 7))
        let outputs = Set((0..<20).map { noise.apply(to: sentence, seed: UInt64($0)) })
        #expect(outputs.count > 15)
        #expect(!outputs.contains(sentence))
    }

    @Test func eachAugmentationDoesWhatItSays() {
        let words = sentence.split(separator: " ").map(String.init)
        // Deletion with p = 1 keeps one word of the text.
        let kept = NoiseAugmentation(wordDeletion: 1).apply(to: sentence, seed: 1)
        #expect(words.contains(kept))
        let fewer = NoiseAugmentation(wordDeletion: 0.3).apply(to: sentence, seed: 1).split(separator: " ")
        #expect(fewer.count < words.count && fewer.count > 0)
        // Swap with p = 1 swaps every disjoint adjacent pair.
        #expect(NoiseAugmentation(wordSwap: 1).apply(to: "a b c d e", seed: 1) == "b a d c e")
        // Character noise keeps the word count (spaces are never touched) and changes characters.
        let noisy = NoiseAugmentation(characterNoise: 0.2).apply(to: sentence, seed: 2)
        #expect(noisy != sentence)
        #expect(noisy.split(separator: " ", omittingEmptySubsequences: false).count == words.count)
    }
}
