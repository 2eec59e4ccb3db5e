@testable import CondenseClient
import CondenseCoordinator
import CondenseEmbedding
import CondenseWire
import Foundation
import Testing

extension ClientSuites {
    @Suite("CondenseClient against a coordinator on loopback")
    struct CondenseClientTests {
        static let pairs = (0..<10).map { TrainingPair(text: "text \($0)", positive: "positive \($0)") }
        static let spec = FineTuneJobSpec(name: "test", hyperparameters: Hyperparameters(duration: .steps(4), batchSize: 4))
        static let adapterFiles: [String: [UInt8]] = [
            "adapter_config.json": Array(#"{"r": 8, "lora_alpha": 16, "target_modules": ["v_proj", "q_proj"]}"#.utf8),
            "adapter_model.safetensors": (0..<3000).map { UInt8($0 % 251) },
            "condense_recipe.json": Array(#"{"pooling": "last", "prompt_template": "{text}", "normalize": true}"#.utf8),
        ]

        @Test(.enabled(if: Fixtures.tinyEmbedder != nil, "tiny-llama fixture missing"))
        func embedAndEmbedStreamMatchTheLocalEmbedderBitForBit() async throws {
            let embedder = try #require(Fixtures.tinyEmbedder)
            var texts = Fixtures.texts(70)
            texts[33] = "   "
            // Reference first: blocking compute during the test would starve the workers' heartbeats.
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 16)
            let cluster = try await TestCluster.start(settings: CoordinatorSettings(batchTexts: 16))
            let workers = [cluster.startWorker("w1", embedder: embedder), cluster.startWorker("w2", embedder: embedder)]
            try await cluster.waitForWorkers(2)
            let client = cluster.client()

            let embeddings = try await client.embed(texts)
            #expect(embeddings.model == "tiny-llama")
            #expect(embeddings.usage.succeededItems == 69)
            #expect(embeddings.usage.failedItems == 1)
            #expect(embeddings.results.count == texts.count)
            for (index, result) in embeddings.results.enumerated() {
                switch (result, expected[index]) {
                case (.success(let vector), .success(let reference)):
                    #expect(bits(vector) == bits(reference), "vector \(index) differs from the local run")
                case (.failure(let error), .failure):
                    #expect(error == EmbeddingItemError(index: 33, code: .emptyText, message: error.message))
                default:
                    Issue.record("item \(index): \(result) but locally \(expected[index])")
                }
            }
            #expect(throws: EmbeddingItemError.self) { try embeddings.vectors() }

            var streamed: [Int: StreamedEmbedding] = [:]
            for try await item in client.embedStream(texts, chunkSize: 45) {
                #expect(streamed[item.index] == nil, "index \(item.index) delivered twice")
                streamed[item.index] = item
            }
            #expect(streamed.keys.sorted() == Array(texts.indices))
            for (index, reference) in expected.enumerated() {
                switch (streamed[index]?.vector, reference) {
                case (.success(let vector), .success(let reference)):
                    #expect(bits(vector) == bits(reference), "streamed vector \(index) differs from the local run")
                    #expect((streamed[index]?.tokenCount ?? 0) > 0)
                case (.failure(let error), .failure):
                    #expect(error.index == 33)
                    #expect(error.code == .emptyText)
                default:
                    Issue.record("streamed item \(index): \(String(describing: streamed[index])) but locally \(reference)")
                }
            }

            await client.close()
            for worker in workers { worker.cancel() }
            try await cluster.stop()
        }

        @Test func watchResumesFromItsCursorWhenTheConnectionDropsAndTheAdapterDownloads() async throws {
            let cluster = try await TestCluster.start()
            let client = cluster.client()
            let job = try await client.createFineTuneJob(spec: Self.spec, pairs: Self.pairs)
            #expect(job.state == .queued)
            #expect(job.pairCount == 10)
            let worker = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-1")
            let assignment = try await worker.nextAssignment()
            #expect(assignment.jobID == job.jobID)
            #expect(assignment.pairs == Self.pairs)

            var events = client.watchJob(job.jobID).makeAsyncIterator()
            var seen: [JobEvent] = []
            seen.append(try #require(try await events.next()))
            worker.send(.started(JobStarted()), job: job.jobID)
            seen.append(try #require(try await events.next()))
            // The watch's connection goes away after two events; the rest happen while it reconnects.
            let dropped = try await client.connection.client()
            await dropped.close()
            worker.send(.step(StepMetrics(step: 1, totalSteps: 4, loss: 2.5, learningRate: 1e-5)), job: job.jobID)
            worker.send(.step(StepMetrics(step: 2, totalSteps: 4, loss: 2.0, learningRate: 2e-5)), job: job.jobID)
            let final = try await worker.upload(job: job.jobID, step: 4, final: true, files: Self.adapterFiles)
            worker.send(.finished(JobFinished(adapterID: final.checkpointID, finalLoss: 1.5)), job: job.jobID)
            while let event = try await events.next() { seen.append(event) }

            #expect(seen.map(\.sequence) == Array(1...5))
            #expect(seen.map(Self.kindName) == ["queued", "started", "step", "step", "finished"])
            #expect(try await client.connection.client() !== dropped)
            let replayed = try await Self.collect(client.watchJob(job.jobID, after: 3))
            #expect(replayed.map(\.sequence) == [4, 5])

            let done = try await client.getJob(job.jobID)
            #expect(done.state == .succeeded)
            #expect(done.adapterID == final.checkpointID)
            let adapters = try await client.listAdapters()
            #expect(adapters.map(\.adapterID) == [final.checkpointID])
            #expect(try await client.getAdapter(final.checkpointID).files == Self.adapterFiles.keys.sorted())

            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("condense-adapter-\(UUID().uuidString)")
            let target = directory.appendingPathComponent("nested/adapter").path
            let files = try await client.downloadAdapter(final.checkpointID, to: target)
            #expect(files == Self.adapterFiles.keys.sorted())
            for (name, bytes) in Self.adapterFiles {
                let written = FileManager.default.contents(atPath: (target as NSString).appendingPathComponent(name))
                #expect(written.map(Array.init) == bytes, "\(name) differs from the uploaded file")
            }
            // Nothing but the adapter's files: the staging directory is gone.
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("nested").path) == ["adapter"])
            try? FileManager.default.removeItem(at: directory)

            await worker.kill()
            await client.close()
            try await cluster.stop()
        }

        @Test func cancelEndsTheWatchAndListsShowTheJob() async throws {
            let cluster = try await TestCluster.start()
            let client = cluster.client()
            let job = try await client.createFineTuneJob(spec: Self.spec, pairs: Self.pairs)
            let watcher = Task { try await Self.collect(client.watchJob(job.jobID)) }

            let cancelled = try await client.cancelJob(job.jobID, reason: "changed my mind")
            #expect(cancelled.state == .cancelled)
            let events = try await watcher.value
            #expect(events.map(Self.kindName) == ["queued", "cancelled"])
            if case .cancelled(let event) = events.last?.kind { #expect(event.reason == "changed my mind") }
            #expect(try await client.cancelJob(job.jobID).lastSequence == cancelled.lastSequence)

            let second = try await client.createFineTuneJob(spec: Self.spec, pairs: Self.pairs)
            #expect(try await client.listJobs().map(\.jobID) == [second.jobID, job.jobID])
            #expect(try await client.listJobs(states: [.cancelled]).map(\.jobID) == [job.jobID])
            #expect(try await client.listJobs(limit: 1).map(\.jobID) == [second.jobID])
            await client.close()
            try await cluster.stop()
        }

        @Test func failuresCarryTheirStatusCodes() async throws {
            let cluster = try await TestCluster.start()
            let client = cluster.client()
            #expect(await statusCode { _ = try await client.getJob("ft-9999") } == .notFound)
            #expect(await statusCode { _ = try await client.cancelJob("ft-9999") } == .notFound)
            #expect(await statusCode { _ = try await client.getAdapter("nope") } == .notFound)
            #expect(await statusCode { _ = try await Self.collect(client.watchJob("ft-9999")) } == .notFound)
            let nowhere = FileManager.default.temporaryDirectory.appendingPathComponent("condense-nothing-\(UUID().uuidString)").path
            #expect(await statusCode { try await client.downloadAdapter("nope", to: nowhere) } == .notFound)
            #expect(!FileManager.default.fileExists(atPath: nowhere))
            #expect(await statusCode { _ = try await client.createFineTuneJob(spec: Self.spec) } == .invalidArgument)
            let emptySide = [TrainingPair(text: "a", positive: "")] + Self.pairs
            #expect(await statusCode { _ = try await client.createFineTuneJob(spec: Self.spec, pairs: emptySide) } == .invalidArgument)
            var named = Self.spec
            named.adapterID = "mine"
            _ = try await client.createFineTuneJob(spec: named, pairs: Self.pairs)
            #expect(await statusCode { _ = try await client.createFineTuneJob(spec: named, pairs: Self.pairs) } == .alreadyExists)
            #expect(await statusCode { _ = try await client.embed([]) } == .invalidArgument)

            // A server-side UNAVAILABLE carries its retry hint and leaves the connection (and other calls) alone.
            let connection = try await client.connection.client()
            do {
                _ = try await client.embed(["no workers yet"])
                Issue.record("embed without workers succeeded")
            } catch {
                #expect(error.code == .unavailable)
                #expect(error.retryAfter == .milliseconds(1000))
                #expect(error.isRetryable)
            }
            #expect(try await client.connection.client() === connection)

            // An unreachable server: calls fail UNAVAILABLE; a watch gives up after its bounded retries.
            try await cluster.stop()
            #expect(await statusCode { _ = try await client.listJobs() } == .unavailable)
            #expect(await statusCode { _ = try await Self.collect(client.watchJob("ft-0001")) } == .unavailable)
            await client.close()
        }

        @Test func theAuthTokenIsSentWithEveryCall() async throws {
            let cluster = try await TestCluster.start(authToken: "s3cret")
            let anonymous = cluster.client()
            #expect(await statusCode { _ = try await anonymous.health() } == .unauthenticated)
            let authorized = cluster.client(authToken: "s3cret")
            _ = try await authorized.health()
            #expect(try await authorized.listJobs().isEmpty)
            await anonymous.close()
            await authorized.close()
            try await cluster.stop()
        }

        @Test func addressesParse() throws {
            let plain = try CondenseClient(address: "localhost:7070")
            #expect(plain.host == "localhost" && plain.port == 7070)
            let v6 = try CondenseClient(address: "[::1]:8080")
            #expect(v6.host == "::1" && v6.port == 8080)
            for bad in ["localhost", "localhost:0", ":7070", "host:port"] {
                #expect(throws: CondenseClientError.self, "\(bad)") { _ = try CondenseClient(address: bad) }
            }
        }

        static func collect(_ events: AsyncThrowingStream<JobEvent, any Error>) async throws -> [JobEvent] {
            var all: [JobEvent] = []
            for try await event in events { all.append(event) }
            return all
        }

        static func kindName(_ event: JobEvent) -> String {
            switch event.kind {
            case .queued: "queued"
            case .started: "started"
            case .step: "step"
            case .checkpoint: "checkpoint"
            case .finished: "finished"
            case .failed: "failed"
            case .cancelled: "cancelled"
            case nil: "none"
            }
        }
    }
}
