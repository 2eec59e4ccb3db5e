import CondenseCoordinator
import CondenseEmbedding
import CondenseRPC
import CondenseWire
import Foundation
import Testing

/// One at a time: the tests compute references on the test's own threads, and a worker whose
/// heartbeats are starved that way would be dropped as silent.
@Suite(.serialized) struct CoordinatorSuites {}

extension CoordinatorSuites {
    @Suite("Coordinator with in-process workers", .enabled(if: Fixtures.tinyEmbedder != nil, "tiny-llama fixture missing"))
    struct CoordinatorTests {
        let embedder: Embedder

        init() throws {
            embedder = try #require(Fixtures.tinyEmbedder)
        }

        @Test func streamThroughTwoWorkersMatchesLocalRun() async throws {
            // Reference first: blocking compute inside the test would starve the workers' heartbeats.
            let texts = Fixtures.texts(300)
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 64)
            let cluster = try await TestCluster.start()
            let workers = [cluster.startWorker("w1", embedder: embedder), cluster.startWorker("w2", embedder: embedder)]
            try await cluster.waitForWorkers(2)
            let client = try await cluster.client()

            let (results, summary) = try await embedStream(client, texts, chunk: 45)

            expectMatches(results, expected)
            #expect(summary?.usage?.succeededItems == 300)
            #expect(summary?.usage?.failedItems == 0)
            #expect(summary?.model == "tiny-llama")
            await client.close()
            for worker in workers { worker.cancel() }
            try await cluster.stop()
        }

        @Test func streamLargerThanTheQueueWaitsForRoomInsteadOfFailing() async throws {
            let texts = Fixtures.texts(150)
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 16)
            let cluster = try await TestCluster.start(
                settings: CoordinatorSettings(batchTexts: 16, maxQueuedTexts: 40, streamWindowTexts: 32))
            let worker = cluster.startWorker("w1", embedder: embedder)
            try await cluster.waitForWorkers(1)
            let client = try await cluster.client()

            let (results, summary) = try await embedStream(client, texts, chunk: 30)

            expectMatches(results, expected)
            #expect(summary?.usage?.succeededItems == 150)
            await client.close()
            worker.cancel()
            try await cluster.stop()
        }

        @Test func unaryEmbedKeepsOrderAndItemErrors() async throws {
            var texts = Fixtures.texts(70)
            texts[33] = "   "
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 16)
            let cluster = try await TestCluster.start(settings: CoordinatorSettings(batchTexts: 16))
            let workers = [cluster.startWorker("w1", embedder: embedder), cluster.startWorker("w2", embedder: embedder)]
            try await cluster.waitForWorkers(2)
            let client = try await cluster.client()

            let response: EmbedResponse = try await client.unary(Methods.EmbeddingService.embed.path, request: EmbedRequest(texts: texts))

            #expect(response.results.map(\.index) == (0..<70).map(UInt64.init))
            #expect(response.results[33].error?.code == .emptyText)
            expectMatches(response.results, expected)
            #expect(response.usage?.succeededItems == 69)
            #expect(response.usage?.failedItems == 1)
            #expect(response.model == "tiny-llama")
            await client.close()
            for worker in workers { worker.cancel() }
            try await cluster.stop()
        }

        @Test func optionsTheModelCannotHonourFailEveryItem() async throws {
            let cluster = try await TestCluster.start()
            let worker = cluster.startWorker("w1", embedder: embedder)
            try await cluster.waitForWorkers(1)
            let client = try await cluster.client()

            let response: EmbedResponse = try await client.unary(
                Methods.EmbeddingService.embed.path,
                request: EmbedRequest(texts: ["one", "two"], options: EmbedOptions(dimensions: 999)))

            #expect(response.results.map(\.error?.code) == [.internal, .internal])
            #expect(response.results.allSatisfy { $0.error?.message.contains("999") == true && $0.vector == nil })
            #expect(response.usage?.failedItems == 2)
            await client.close()
            worker.cancel()
            try await cluster.stop()
        }

        @Test func batchesOfAWorkerThatDiesAreRerunElsewhere() async throws {
            // Reference first: blocking compute inside the test would starve the workers' heartbeats.
            let texts = Fixtures.texts(200)
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 64)
            let cluster = try await TestCluster.start()
            // Registered first, so it wins ties and is sure to hold batches when it dies.
            let doomed = try await StallingWorker(port: cluster.port, id: "doomed")
            try await cluster.waitForWorkers(1)
            let healthy = cluster.startWorker("healthy", embedder: embedder)
            try await cluster.waitForWorkers(2)
            let client = try await cluster.client()

            async let streamed = embedStream(client, texts)
            // The first batch goes to the worker that registered first; the stream cannot finish
            // while it holds that batch.
            var held: Assignment?
            for await assignment in doomed.assignments {
                held = assignment
                break
            }
            await doomed.kill()
            let (results, summary) = try await streamed

            #expect(held != nil)
            expectMatches(results, expected)
            #expect(summary?.usage?.succeededItems == 200)
            await client.close()
            healthy.cancel()
            try await cluster.stop()
        }

        @Test func silentWorkerIsDroppedAndItsBatchesRerun() async throws {
            // Reference first: blocking compute inside the test would starve the workers' heartbeats.
            let texts = Fixtures.texts(200)
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 64)
            let cluster = try await TestCluster.start(settings: CoordinatorSettings(heartbeatTimeout: .seconds(3)))
            let silent = try await StallingWorker(port: cluster.port, id: "silent")
            try await cluster.waitForWorkers(1)
            let healthy = cluster.startWorker("healthy", embedder: embedder, heartbeat: .milliseconds(50))
            try await cluster.waitForWorkers(2)
            let client = try await cluster.client()

            let (results, _) = try await embedStream(client, texts)
            var held = 0
            // The coordinator ended the silent worker's session: its assignment stream finished.
            for await _ in silent.assignments { held += 1 }

            #expect(held >= 1)
            expectMatches(results, expected)
            #expect(await cluster.service.embeddingWorkerCount == 1)
            await silent.kill()
            await client.close()
            healthy.cancel()
            try await cluster.stop()
        }

        @Test func noWorkersIsUnavailableWithRetryHint() async throws {
            let cluster = try await TestCluster.start()
            let client = try await cluster.client()

            let health: HealthResponse = try await client.unary(Methods.EmbeddingService.health.path, request: HealthRequest())
            #expect(health.status == .notServing)
            #expect(health.detail == "no embedding workers")
            await #expect(throws: RPCError(code: .unavailable, message: "no embedding workers", retryAfterMs: 1000)) {
                let _: EmbedResponse = try await client.unary(
                    Methods.EmbeddingService.embed.path, request: EmbedRequest(texts: ["hello"]))
            }
            await #expect(throws: RPCError(code: .unavailable, message: "no embedding workers", retryAfterMs: 1000)) {
                _ = try await embedStream(client, ["hello"])
            }
            await client.close()
            try await cluster.stop()
        }

        @Test func fullQueueIsResourceExhaustedWithRetryHint() async throws {
            let cluster = try await TestCluster.start(settings: CoordinatorSettings(maxQueuedTexts: 8, retryAfterMs: 250))
            let stalling = try await StallingWorker(port: cluster.port, id: "stall")
            try await cluster.waitForWorkers(1)
            let client = try await cluster.client()

            do {
                let _: EmbedResponse = try await client.unary(
                    Methods.EmbeddingService.embed.path, request: EmbedRequest(texts: Fixtures.texts(9)))
                Issue.record("9 texts should not fit a queue of 8")
            } catch let error as RPCError {
                #expect(error.code == .resourceExhausted)
                #expect(error.retryAfterMs == 250)
            }
            #expect(await cluster.service.embeddingWorkerCount == 1)
            await stalling.kill()
            await client.close()
            try await cluster.stop()
        }

        /// Bad options of client calls: BadInputStatusTests.
        @Test func trainingWorkersAreRefusedWithoutAStateDirectory() async throws {
            let cluster = try await TestCluster.start()
            let stalling = try await StallingWorker(port: cluster.port, id: "stall")
            try await cluster.waitForWorkers(1)
            let client = try await cluster.client()

            // Without a state directory a training worker is refused: its session ends, it is not counted.
            let trainer = try await StallingWorker(port: cluster.port, id: "trainer", kind: .train)
            for await _ in trainer.assignments {}
            #expect(await cluster.service.embeddingWorkerCount == 1)
            await trainer.kill()
            await stalling.kill()
            await client.close()
            try await cluster.stop()
        }
    }
}
