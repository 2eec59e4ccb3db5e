import CondenseClient
import CondenseWire
import Foundation
import Testing

extension CoordinatorSuites {
    @Suite(
        "Coordinator and workers as processes",
        .enabled(if: condenseBinary != nil, "the condense executable was not found next to the tests (set CONDENSE_BINARY)"),
        .enabled(if: Fixtures.tinyEmbedder != nil, "tiny-llama fixture missing"))
    struct ProcessClusterTests {
        /// Bulk work through the client library while one of two embedding workers dies halfway; a
        /// training worker sits in the same cluster and must take none of it.
        @Test(.timeLimit(.minutes(10))) func killedWorkerMidStreamLosesNothing() async throws {
            let binary = try #require(condenseBinary)
            let embedder = try #require(Fixtures.tinyEmbedder)
            let texts = Self.shortTexts(20_000)
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 64)

            let cluster = try await ProcessCluster(binary: binary)
            defer { cluster.stop() }
            let victim = try cluster.startEmbeddingWorker("w1")
            try cluster.startEmbeddingWorker("w2")
            try cluster.startTrainingWorker("t1")
            let client = cluster.client()
            try await cluster.waitForHealth(client, detail: "2 embedding workers")
            try await cluster.waitForCoordinatorLog("training worker registered", "worker=t1")

            var vectors = [Result<[Float], EmbeddingItemError>?](repeating: nil, count: texts.count)
            var received = 0
            var frozenAt: Int?
            var killedAt: Int?
            for try await item in client.embedStream(texts) {
                try #require(vectors.indices.contains(item.index), "index \(item.index) out of range")
                #expect(vectors[item.index] == nil, "index \(item.index) delivered twice")
                vectors[item.index] = item.vector
                received += 1
                // Halfway w1 freezes: the coordinator hands it batches it never answers...
                if frozenAt == nil, received >= texts.count / 2 {
                    victim.signal(SIGSTOP)
                    frozenAt = received
                }
                // ...so that once w2 has done a few more, w1 surely holds some when it dies.
                if killedAt == nil, let frozenAt, received >= frozenAt + 8 * 64 {
                    victim.signal(SIGKILL)
                    killedAt = received
                }
            }
            #expect(killedAt.map { $0 < texts.count } == true, "w1 was not killed mid-stream")
            #expect(received == texts.count)
            // Assembled by their indexes, the vectors are the local run's, in input order, bit for bit.
            for (index, reference) in expected.enumerated() {
                let delivered = try #require(vectors[index], "text \(index) never arrived")
                #expect(
                    try delivered.get().map(\.bitPattern) == reference.get().map(\.bitPattern),
                    "vector \(index) differs from the local run")
            }
            victim.process.waitUntilExit()
            #expect(victim.process.terminationReason == .uncaughtSignal)

            // The coordinator re-queued what w1 held, and serves on with w2; the training worker stayed.
            try await cluster.waitForHealth(client, detail: "1 embedding worker")
            let log = try String(contentsOf: cluster.coordinatorLog, encoding: .utf8)
            let requeued = log.split(separator: "\n").filter { $0.contains("worker left") && $0.contains("worker=w1") }
                .compactMap { line in line.firstRange(of: "requeued_batches=").flatMap { Int(line[$0.upperBound...].prefix { $0.isNumber }) } }
            #expect(requeued.count == 1)
            #expect((requeued.first ?? 0) > 0, "coordinator log:\n\(log)")
            #expect(!log.split(separator: "\n").contains { $0.contains("worker left") && $0.contains("worker=t1") })
            await client.close()
        }

        /// Distinct texts of a word and the index: few tokens each, so that even a debug build (the
        /// reference here and the workers) embeds 20,000 of them in about a minute.
        static func shortTexts(_ count: Int) -> [String] {
            let words = ["alpha", "river", "stone", "quick", "blue", "cloud", "seven", "lamp", "north", "green", "paper"]
            return (0..<count).map { "\(words[$0 % words.count]) \($0)" }
        }
    }
}
