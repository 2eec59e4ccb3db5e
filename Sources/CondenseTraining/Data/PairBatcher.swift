/// Splits pairs into training batches, epoch by epoch, so that no text occurs twice in a batch.
///
/// With InfoNCE every other positive of a batch is a negative; a text that occurs in two pairs of one
/// batch (as either side) would be its own negative. Texts are compared after collapsing whitespace
/// runs and trimming (independent of the prompt); the two sides of one pair may be equal.
///
/// Each epoch visits the pairs in a seeded shuffle of their own (`seed`, epoch). A pair that shares a
/// text with the batch being filled waits for a later batch and gets the first chance there, so every
/// pair lands in exactly one batch of the epoch. Batches hold `batchSize` pairs except near the end of
/// an epoch, where waiting pairs and the remainder form smaller ones (never fewer than 2 pairs when the
/// data allows: a lone pair takes a compatible one from an earlier batch, or joins one).
public struct PairBatcher: Sendable {
    public let pairCount: Int
    public let batchSize: Int
    public let seed: UInt64
    /// Normalised text ids of each pair's sides (equal sides collapse to one id).
    private let textIDs: [[Int]]

    public init(pairs: [TextPair], batchSize: Int, seed: UInt64) {
        var ids: [String: Int] = [:]
        textIDs = pairs.map { pair in
            let sides = [Self.normalized(pair.text), Self.normalized(pair.positive)].map { key in
                if let id = ids[key] { return id }
                let id = ids.count
                ids[key] = id
                return id
            }
            return sides[0] == sides[1] ? [sides[0]] : sides
        }
        pairCount = pairs.count
        self.batchSize = max(1, batchSize)
        self.seed = seed
    }

    /// Whitespace runs collapsed to one space, ends trimmed.
    public static func normalized(_ text: String) -> String {
        text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// Pair indexes of every batch of `epoch` (0-based), in training order.
    public func batches(epoch: Int) -> [[Int]] {
        var random = SeededRandom(seed: SeededRandom.mix(seed ^ 0xBA7C_4E50_0000_0000) ^ UInt64(truncatingIfNeeded: epoch))
        var order = Array(0..<pairCount)
        // Fisher-Yates with our own generator: the standard library's shuffle may change across releases.
        if order.count > 1 {
            for index in stride(from: order.count - 1, to: 0, by: -1) {
                order.swapAt(index, Int(random.next() % UInt64(index + 1)))
            }
        }
        var batches: [[Int]] = []
        var waiting: [Int] = []
        var cursor = 0
        while cursor < order.count || !waiting.isEmpty {
            var batch: [Int] = []
            var used = Set<Int>()
            var stillWaiting: [Int] = []
            func offer(_ pair: Int) {
                if batch.count < batchSize, textIDs[pair].allSatisfy({ !used.contains($0) }) {
                    batch.append(pair)
                    used.formUnion(textIDs[pair])
                } else {
                    stillWaiting.append(pair)
                }
            }
            for pair in waiting { offer(pair) }
            while batch.count < batchSize, cursor < order.count {
                offer(order[cursor])
                cursor += 1
            }
            waiting = stillWaiting
            batches.append(batch)
        }
        fillLoneBatches(&batches)
        return batches
    }

    /// Gives each batch of one pair a partner: a compatible pair from the latest possible earlier batch of
    /// 3 or more, else it joins the latest compatible batch (one over `batchSize`). InfoNCE needs 2 pairs.
    private func fillLoneBatches(_ batches: inout [[Int]]) {
        var lone = 0
        while lone < batches.count {
            defer { lone += 1 }
            guard batches[lone].count == 1 else { continue }
            let pair = batches[lone][0], taken = Set(textIDs[pair])
            func compatible(_ other: Int) -> Bool { textIDs[other].allSatisfy { !taken.contains($0) } }
            if let donor = batches.indices.reversed().first(where: { $0 != lone && batches[$0].count > 2 && batches[$0].contains(where: compatible) }),
               let position = batches[donor].lastIndex(where: compatible) {
                batches[lone].append(batches[donor].remove(at: position))
            } else if let host = batches.indices.reversed().first(where: { $0 != lone && batches[$0].allSatisfy(compatible) }) {
                batches[host].append(pair)
                batches.remove(at: lone)
                lone -= 1
            }
        }
    }
}
