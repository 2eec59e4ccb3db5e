import CondenseCoordinator
import CondenseEmbedding
import CondenseRPC
import CondenseTraining
import CondenseWire
import CondenseWorker
import Foundation
import Testing

extension CoordinatorSuites {
    @Suite("Graceful shutdown of workers and the coordinator", .enabled(if: TrainingFixtures.model != nil, "tiny-llama fixture missing"))
    struct GracefulShutdownTests {
        let stateDirectory = TrainingFixtures.temporaryDirectory("state")

        /// Long enough that a shutdown at the first step event lands mid-job.
        static let steps = 12
        /// No periodic checkpoints: every checkpoint before the end is one a hand-back wrote.
        static let spec = FineTuneJobSpec(
            name: "tiny", hyperparameters: Hyperparameters(
                duration: .steps(UInt32(Self.steps)), batchSize: 4, learningRate: 1e-3, warmupSteps: 2, loraRank: 4, loraAlpha: 8,
                loraDropout: 0.1, temperature: 0.2, maxTokens: 24, seed: 7, checkpointEvery: 0))

        func trainingWorker(_ id: String, port: Int) -> TrainingWorker {
            TrainingWorker(
                configuration: TrainingWorkerConfiguration(
                    connection: CoordinatorConnection(host: "127.0.0.1", port: port, workerID: id, heartbeatInterval: .milliseconds(100)),
                    workDirectory: TrainingFixtures.temporaryDirectory(id)),
                model: TrainingFixtures.model!, modelID: "tiny-llama", logger: quietLogger)
        }

        func createJob(_ client: RPCClient) async throws -> FineTuneJob {
            try await client.clientStreaming(
                Methods.FineTuneService.createFineTuneJob.path, requestType: CreateFineTuneJobRequest.self
            ) { writer in
                try await writer.write(CreateFineTuneJobRequest(kind: .spec(Self.spec)))
                try await writer.write(CreateFineTuneJobRequest(kind: .pairs(PairChunk(
                    pairs: TrainingFixtures.pairs.map { TrainingPair(text: $0.text, positive: $0.positive) }))))
            }
        }

        /// Events after `after` until `stop` says so or the job ends.
        func watch(_ client: RPCClient, _ job: String, after: UInt64 = 0, until stop: @escaping @Sendable (JobEvent) -> Bool = { _ in false })
            async throws -> [JobEvent]
        {
            try await client.serverStreaming(
                Methods.FineTuneService.watchJob.path, request: WatchJobRequest(jobID: job, afterSequence: after), responseType: JobEvent.self
            ) { events in
                var all: [JobEvent] = []
                for try await event in events {
                    all.append(event)
                    if stop(event) { break }
                }
                return all
            }
        }

        func getJob(_ client: RPCClient, _ job: String) async throws -> FineTuneJob {
            try await client.unary(Methods.FineTuneService.getJob.path, request: GetJobRequest(jobID: job))
        }

        func adapterBytes(_ client: RPCClient, _ adapter: String) async throws -> [UInt8]? {
            try await client.serverStreaming(
                Methods.FineTuneService.downloadAdapter.path, request: DownloadAdapterRequest(adapterID: adapter), responseType: FileChunk.self
            ) { chunks in
                var bytes: [UInt8] = []
                for try await chunk in chunks where chunk.path == "adapter_model.safetensors" { bytes += chunk.data }
                return bytes
            }
        }

        /// The adapter of the uninterrupted local run with the same settings.
        static func localAdapter() throws -> [UInt8] {
            let out = TrainingFixtures.temporaryDirectory("local")
            let options = try FineTuneOptions(
                training: TrainingConfiguration(
                    lora: LoRAConfiguration(rank: 4, alpha: 8, dropout: 0.1), learningRate: 1e-3, warmupSteps: 2, temperature: 0.2,
                    microBatchTokens: FineTuneOptions.defaultMicroBatchTokens, seed: 7),
                embedding: EmbeddingOptions(
                    prompt: PromptTemplate(nameOrTemplate: "cluster1"), pooling: CondenseEmbedding.Pooling.mean, normalize: true, maxTokens: 24),
                batchSize: 4, steps: Self.steps, outputDirectory: out)
            try FineTuneRun(model: TrainingFixtures.model!, baseModel: "tiny-llama", pairs: TrainingFixtures.pairs, options: options).run()
            return try #require(FileManager.default.contents(atPath: out + "/adapter_model.safetensors")).map { $0 }
        }

        /// The hand-back at the end of `events`: the checkpoint's step, which is the last step trained,
        /// and the QUEUED event after it that says why and from where.
        func expectHandBack(_ events: [JobEvent], worker: String) -> UInt32? {
            let steps = events.compactMap { event -> UInt32? in if case .step(let step) = event.kind { return step.step } else { return nil } }
            let checkpoints = events.compactMap { event -> UInt32? in
                if case .checkpoint(let saved) = event.kind { return saved.step } else { return nil }
            }
            #expect(checkpoints.count == 1, "one checkpoint, written by the hand-back: \(checkpoints)")
            guard let step = checkpoints.last else { return nil }
            #expect(step == steps.last, "the checkpoint holds the last step trained")
            #expect(step < UInt32(Self.steps), "the shutdown came before the last step")
            guard case .queued(let queued) = events.last?.kind else {
                Issue.record("the job was not queued again: \(String(describing: events.last))")
                return step
            }
            #expect(queued.reason.contains(worker) && queued.reason.contains("resumes after step \(step)"), "reason: \(queued.reason)")
            return step
        }

        /// Runs the job to its end on a fresh worker; checks it resumed after `step` and matches `expected` bit for bit.
        func finishOnAnotherWorker(_ client: RPCClient, port: Int, job: String, after sequence: UInt64, step: UInt32, expected: [UInt8])
            async throws
        {
            let second = Task { try? await trainingWorker("trainer-2", port: port).run() }
            let rest = try await watch(client, job, after: sequence)
            second.cancel()
            _ = await second.value
            let started = rest.compactMap { event -> JobStarted? in if case .started(let started) = event.kind { return started } else { return nil } }
            #expect(started.first?.workerID == "trainer-2")
            #expect(started.first?.resumedFromStep == step, "resumed from the hand-back's checkpoint")
            guard case .finished(let finished) = rest.last?.kind else {
                Issue.record("job did not finish: \(String(describing: rest.last))")
                return
            }
            #expect(try await adapterBytes(client, finished.adapterID) == expected, "handed back + resumed = uninterrupted run")
        }

        @Test func aTrainingWorkerShutDownMidJobHandsItBackAtTheStepItReached() async throws {
            let expected = try Self.localAdapter()
            let fineTune = try FineTuneCoordinator(stateDirectory: stateDirectory, logger: quietLogger)
            let cluster = try await TestCluster.start(fineTune: fineTune)
            let client = try await cluster.client()
            let job = try await createJob(client)

            let shutdown = WorkerShutdown()
            let worker = trainingWorker("trainer-1", port: cluster.port)
            let first = Task { try await worker.run(until: shutdown) }
            let before = try await watch(client, job.jobID) { if case .step = $0.kind { true } else { false } }
            shutdown.begin()
            try await first.value  // returns by itself: the worker stops for good
            let handedBack = try await watch(client, job.jobID, after: before.last?.sequence ?? 0) {
                if case .queued = $0.kind { true } else { false }
            }
            let events = before + handedBack
            let step = try #require(expectHandBack(events, worker: "trainer-1"))
            #expect(try await getJob(client, job.jobID).state == .queued)
            #expect(FileManager.default.fileExists(
                atPath: stateDirectory + "/checkpoints/" + ArtifactStore.checkpointID(job: job.jobID, step: step) + "/trainer_state.json"))

            try await finishOnAnotherWorker(
                client, port: cluster.port, job: job.jobID, after: events.last?.sequence ?? 0, step: step, expected: expected)
            await client.close()
            try await cluster.stop()
        }

        @Test func aCoordinatorShutdownDrainsItsWorkersAndKeepsTheJobForItsSuccessor() async throws {
            let expected = try Self.localAdapter()
            let fineTune = try FineTuneCoordinator(stateDirectory: stateDirectory, logger: quietLogger)
            let cluster = try await TestCluster.start(fineTune: fineTune)
            let client = try await cluster.client()
            let job = try await createJob(client)
            let embedder = try #require(Fixtures.tinyEmbedder)
            let embedding = cluster.startWorker("embed-1", embedder: embedder)
            try await cluster.waitForWorkers(1)
            let training = Task { try? await trainingWorker("trainer-1", port: cluster.port).run() }
            let before = try await watch(client, job.jobID) { if case .step = $0.kind { true } else { false } }

            // Watchers are told to come back; the training worker hands its job back; the embedding worker leaves.
            let watcher = Task { try await watch(client, job.jobID, after: before.last?.sequence ?? 0) }
            await cluster.service.shutdown(grace: .seconds(30))
            #expect(await statusCode { _ = try await watcher.value } == .unavailable, "the watch ends: watch again later")
            #expect(await cluster.service.embeddingWorkerCount == 0)
            #expect(await fineTune.trainingWorkerCount == 0)
            #expect(await statusCode { _ = try await getJob(client, job.jobID) } == .unavailable, "new calls are refused")
            let health: HealthResponse = try await client.unary(Methods.EmbeddingService.health.path, request: HealthRequest())
            #expect(health.status == .notServing)
            try await cluster.stop()
            await client.close()
            training.cancel()
            embedding.cancel()
            _ = await (training.value, embedding.value)

            // The successor finds the job QUEUED at the handed-back step and finishes it.
            let successor = try FineTuneCoordinator(stateDirectory: stateDirectory, logger: quietLogger)
            try await successor.recover()
            let restarted = try await TestCluster.start(fineTune: successor)
            let again = try await restarted.client()
            let events = try await watch(again, job.jobID) { if case .queued(let queued) = $0.kind { !queued.reason.isEmpty } else { false } }
            let step = try #require(expectHandBack(events, worker: "trainer-1"))
            try await finishOnAnotherWorker(
                again, port: restarted.port, job: job.jobID, after: events.last?.sequence ?? 0, step: step, expected: expected)
            await again.close()
            try await restarted.stop()
        }

        @Test func anEmbeddingWorkerShutDownMidStreamDeliversWhatItHolds() async throws {
            let embedder = try #require(Fixtures.tinyEmbedder)
            let texts = Fixtures.texts(400)
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 16)
            let cluster = try await TestCluster.start(settings: CoordinatorSettings(batchTexts: 16))
            let activity = WorkerActivity(kind: .embed)
            let shutdown = WorkerShutdown()
            let leaving = EmbeddingWorker(
                configuration: EmbeddingWorkerConfiguration(
                    connection: CoordinatorConnection(
                        host: "127.0.0.1", port: cluster.port, workerID: "leaving", heartbeatInterval: .milliseconds(100))),
                embedder: embedder, modelID: "tiny-llama", activity: activity, logger: quietLogger)
            let first = Task { try await leaving.run(until: shutdown) }
            try await cluster.waitForWorkers(1)
            let staying = cluster.startWorker("staying", embedder: embedder)
            try await cluster.waitForWorkers(2)
            let client = try await cluster.client()

            async let streamed = embedStream(client, texts, chunk: 40)
            // Mid-stream: the leaving worker has answered a batch and holds more.
            for _ in 0..<10_000 where Self.batches(activity) < 2 { try await Task.sleep(for: .milliseconds(1)) }
            shutdown.begin()
            try await first.value
            let answered = Self.batches(activity)
            let (results, summary) = try await streamed

            expectMatches(results, expected)  // every index once, bit-identical
            #expect(summary?.usage?.succeededItems == 400)
            #expect(answered >= 2)
            #expect(await cluster.service.embeddingWorkerCount == 1)
            await client.close()
            staying.cancel()
            try await cluster.stop()
        }

        static func batches(_ activity: WorkerActivity) -> Double {
            activity.collectMetrics().first { $0.name == "condense_worker_batches_total" }?.samples.first?.value ?? 0
        }
    }
}

/// The status code a call failed with; nil when it succeeded.
func statusCode(_ body: () async throws -> Void) async -> StatusCode? {
    do {
        try await body()
        return nil
    } catch let error as RPCError {
        return error.code
    } catch is CancellationError {
        return .cancelled
    } catch {
        return .unknown
    }
}
