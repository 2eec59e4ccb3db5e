import CondenseCoordinator
import CondenseEmbedding
import CondenseModel
import CondenseRPC
import CondenseTraining
import CondenseWire
import CondenseWorker
import Foundation
import Testing

extension CoordinatorSuites {
    @Suite("Fine-tuned adapters served by embedding workers", .enabled(if: TrainingFixtures.model != nil, "tiny-llama fixture missing"))
    struct AdapterServingTests {
        let stateDirectory = TrainingFixtures.temporaryDirectory("adapter-state")
        let cacheDirectory = TrainingFixtures.temporaryDirectory("adapter-cache")
        let texts = Fixtures.texts(10)

        /// The recipe the test adapters were "trained" with: what `adapter_id` alone must reproduce.
        static func recipe() throws -> EmbeddingRecipe {
            EmbeddingRecipe(prompt: try PromptTemplate(nameOrTemplate: "cluster1"), pooling: .last, normalize: true, maxTokens: 24)
        }

        /// A PEFT adapter for the tiny model with non-zero B (a fresh adapter's B is zero: no effect), plus the recipe.
        static func writeAdapter(seed: UInt64) throws -> String {
            let directory = TrainingFixtures.temporaryDirectory("adapter-\(seed)")
            let config = try #require(TrainingFixtures.model).weights.config
            let layout = LoRALayout(configuration: LoRAConfiguration(rank: 4, alpha: 8, dropout: 0), model: config)
            var adapter = LoRAAdapter(layout: layout, seed: seed)
            for slot in layout.slots {
                for i in slot.bOffset..<(slot.bOffset + slot.bCount) {
                    adapter.parameters[i] = 0.3 * sin(Float(i) * 0.7 + Float(seed))
                }
            }
            try adapter.writePEFT(to: directory, baseModel: "tiny-llama")
            try recipe().write(toDirectory: directory)
            return directory
        }

        static func files(in directory: String) throws -> [String: [UInt8]] {
            var files: [String: [UInt8]] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
                files[name] = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent(name)))
            }
            return files
        }

        /// Stores `files` as adapter `id` the way training does: a job whose worker uploads its final adapter.
        func store(_ id: String, files: [String: [UInt8]], client: RPCClient, trainer: ScriptedTrainingWorker) async throws {
            let job: FineTuneJob = try await client.clientStreaming(
                Methods.FineTuneService.createFineTuneJob.path, requestType: CreateFineTuneJobRequest.self
            ) { writer in
                try await writer.write(CreateFineTuneJobRequest(kind: .spec(FineTuneJobSpec(
                    name: id, hyperparameters: Hyperparameters(duration: .steps(1), batchSize: 2), adapterID: id))))
                try await writer.write(CreateFineTuneJobRequest(kind: .pairs(PairChunk(
                    pairs: [TrainingPair(text: "a", positive: "b"), TrainingPair(text: "c", positive: "d")]))))
            }
            _ = try await trainer.nextAssignment()
            trainer.send(.started(JobStarted()), job: job.jobID)
            let uploaded = try await trainer.upload(job: job.jobID, step: 1, final: true, files: files)
            #expect(uploaded.checkpointID == id)
            trainer.send(.finished(JobFinished(adapterID: id, finalLoss: 1)), job: job.jobID)
            // The trainer takes the next job only once this one has finished.
            for _ in 0..<500 {
                let current: FineTuneJob = try await client.unary(Methods.FineTuneService.getJob.path, request: GetJobRequest(jobID: job.jobID))
                if current.state == .succeeded { return }
                try await Task.sleep(for: .milliseconds(10))
            }
            Issue.record("job for adapter \(id) did not succeed")
        }

        func embed(_ client: RPCClient, _ options: EmbedOptions) async throws -> EmbedResponse {
            try await client.unary(Methods.EmbeddingService.embed.path, request: EmbedRequest(texts: texts, options: options))
        }

        func embedStream(_ client: RPCClient, _ options: EmbedOptions) async throws -> (results: [EmbeddingResult], summary: EmbedStreamSummary?) {
            try await client.bidirectional(
                Methods.EmbeddingService.embedStream.path, requestType: EmbedStreamRequest.self, responseType: EmbedStreamResponse.self,
                sendRequests: { writer in
                    try await writer.write(EmbedStreamRequest(options: options, firstIndex: 0, texts: Array(texts.prefix(4))))
                    try await writer.write(EmbedStreamRequest(firstIndex: 4, texts: Array(texts.dropFirst(4))))
                },
                handleResponses: { responses in
                    var results: [EmbeddingResult] = []
                    var summary: EmbedStreamSummary?
                    for try await response in responses {
                        switch response.kind {
                        case .batch(let batch): results += batch.results
                        case .summary(let value): summary = value
                        case nil: break
                        }
                    }
                    return (results, summary)
                })
        }

        /// Bit patterns of the vectors, in index order (empty for failed items).
        static func bits(_ results: [EmbeddingResult]) -> [[UInt32]] {
            results.sorted { $0.index < $1.index }.map { $0.vector?.values.map(\.bitPattern) ?? [] }
        }

        @Test func adapterIDAloneEmbedsWithTheMergedAdapterAndItsRecipeFetchedOnce() async throws {
            let first = try Self.writeAdapter(seed: 1)
            let second = try Self.writeAdapter(seed: 2)
            let fineTune = try FineTuneCoordinator(stateDirectory: stateDirectory, logger: quietLogger)
            let cluster = try await TestCluster.start(fineTune: fineTune)
            let client = try await cluster.client()
            let trainer = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-1")
            try await store("first", files: Self.files(in: first), client: client, trainer: trainer)
            try await store("second", files: Self.files(in: second), client: client, trainer: trainer)
            // Fetches fine, cannot be loaded (a recipe without max_tokens, random bytes as weights).
            try await store("broken", files: FineTuneCoordinatorTests.adapterFiles, client: client, trainer: trainer)
            await trainer.kill()

            // One adapter in memory at a time, so switching adapters reloads from the worker's disk cache.
            let loads = LoadLog()
            let adapters = AdapterServing(cacheDirectory: cacheDirectory, capacity: 1) { directory in
                loads.append(URL(fileURLWithPath: directory).lastPathComponent)
                return try Embedder.load(modelPath: Fixtures.tinyLlama, adapterDirectory: directory)
            }
            let embedder = try #require(Fixtures.tinyEmbedder)
            let worker = EmbeddingWorker(
                configuration: EmbeddingWorkerConfiguration(connection: CoordinatorConnection(
                    host: "127.0.0.1", port: cluster.port, workerID: "embed-1", heartbeatInterval: .milliseconds(100))),
                embedder: embedder, modelID: "tiny-llama", adapters: adapters, logger: quietLogger)
            let running = Task { try? await worker.run() }
            try await cluster.waitForWorkers(1)

            let options = try Self.recipe().options()
            let expectedFirst = try Embedder.load(modelPath: Fixtures.tinyLlama, adapterDirectory: first)
                .embed(texts, options: options).map { try $0.get().map(\.bitPattern) }
            let expectedSecond = try Embedder.load(modelPath: Fixtures.tinyLlama, adapterDirectory: second)
                .embed(texts, options: options).map { try $0.get().map(\.bitPattern) }
            let base = try embedder.embed(texts, options: options).map { try $0.get().map(\.bitPattern) }
            #expect(expectedFirst != base && expectedSecond != base && expectedFirst != expectedSecond)

            let response = try await embed(client, EmbedOptions(adapterID: "first"))
            #expect(Self.bits(response.results) == expectedFirst, "adapter_id alone = the merged adapter with its recipe")
            #expect(response.model == "tiny-llama+first")
            #expect(try FileManager.default.contentsOfDirectory(atPath: cacheDirectory) == ["first"])

            // The coordinator's copy is gone: the next calls can only succeed from the worker's cache.
            try FileManager.default.removeItem(atPath: stateDirectory + "/adapters/first")
            let streamed = try await embedStream(client, EmbedOptions(adapterID: "first"))
            #expect(Self.bits(streamed.results) == expectedFirst)
            #expect(streamed.summary?.model == "tiny-llama+first")

            // A request's own options still win over the recipe's.
            let unnormalized = try await embed(client, EmbedOptions(pooling: .mean, normalize: false, adapterID: "first"))
            var overridden = options
            overridden.pooling = .mean
            overridden.normalize = false
            let expectedOverridden = try Embedder.load(modelPath: Fixtures.tinyLlama, adapterDirectory: first)
                .embed(texts, options: overridden).map { try $0.get().map(\.bitPattern) }
            #expect(Self.bits(unnormalized.results) == expectedOverridden)

            let broken = try await embed(client, EmbedOptions(adapterID: "broken"))
            #expect(broken.results.count == texts.count)
            #expect(broken.usage?.failedItems == UInt64(texts.count))
            for result in broken.results {
                #expect(result.vector == nil)
                #expect(result.error?.code == .internal)
                #expect(result.error?.message.contains("cannot load adapter 'broken'") == true, "\(String(describing: result.error))")
            }

            let switched = try await embed(client, EmbedOptions(adapterID: "second"))
            #expect(Self.bits(switched.results) == expectedSecond)
            let back = try await embed(client, EmbedOptions(adapterID: "first"))
            #expect(Self.bits(back.results) == expectedFirst)
            #expect(loads.names == ["first", "second", "first"], "evicted from memory, reloaded from disk, never fetched twice")
            #expect(try FileManager.default.contentsOfDirectory(atPath: cacheDirectory).sorted() == ["broken", "first", "second"])

            // Base-model requests are unaffected.
            let plain = try await embed(client, EmbedOptions(prompt: .promptName("cluster1"), pooling: .last, normalize: true, maxTokens: 24))
            #expect(Self.bits(plain.results) == base)
            #expect(plain.model == "tiny-llama")

            running.cancel()
            _ = await running.value
            await client.close()
            try await cluster.stop()
        }

        /// Unknown adapters of a coordinator with fine-tuning state: BadInputStatusTests.
        @Test func withoutFineTuningStateNoAdapterExists() async throws {
            func code(_ body: () async throws -> Void) async -> StatusCode? {
                do { try await body(); return nil } catch let error as RPCError { return error.code } catch { return .unknown }
            }
            let bare = try await TestCluster.start()
            let bareWorker = bare.startWorker("embed-1", embedder: try #require(Fixtures.tinyEmbedder))
            try await bare.waitForWorkers(1)
            let bareClient = try await bare.client()
            #expect(await code { _ = try await embed(bareClient, EmbedOptions(adapterID: "first")) } == .notFound)
            bareWorker.cancel()
            await bareClient.close()
            try await bare.stop()
        }

        @Test func aReconnectingWorkerReportsItsLoadedAdapters() async throws {
            let adapter = try Self.writeAdapter(seed: 1)
            let (registrations, registered) = AsyncStream<Register>.makeStream()
            let server = RPCServer(
                configuration: .init(shutdownGracePeriod: .milliseconds(500)),
                services: [OneAdapterBatchCoordinator(adapterDirectory: adapter, registrations: registered)], logger: quietLogger)
            let port = try await server.start()
            let worker = EmbeddingWorker(
                configuration: EmbeddingWorkerConfiguration(connection: CoordinatorConnection(
                    host: "127.0.0.1", port: port, workerID: "embed-1", heartbeatInterval: .milliseconds(100))),
                embedder: try #require(Fixtures.tinyEmbedder), modelID: "tiny-llama",
                adapters: .merging(into: Fixtures.tinyLlama, cacheDirectory: cacheDirectory), logger: quietLogger)
            let running = Task { try? await worker.run() }
            var sessions = registrations.makeAsyncIterator()
            #expect(await sessions.next()?.adaptersCached == [])
            #expect(await sessions.next()?.adaptersCached == ["first"])
            running.cancel()
            _ = await running.value
            try await server.stop()
        }
    }
}

/// A coordinator stand-in: records each Register; the first session gets one batch for adapter
/// "first" (served by FetchAdapter from `adapterDirectory`) and ends once it is answered.
private struct OneAdapterBatchCoordinator: RPCService {
    let adapterDirectory: String
    let registrations: AsyncStream<Register>.Continuation

    func register(in registry: inout RPCMethodRegistry) {
        let (adapterDirectory, registrations) = (self.adapterDirectory, self.registrations)
        registry.bidirectional(Methods.WorkerService.connect.path) {
            (requests: RPCMessageStream<WorkerMessage>, responses: RPCMessageWriter<CoordinatorMessage>, _) in
            var messages = requests.makeAsyncIterator()
            guard case .registration(let registration)? = try await messages.next()?.kind else { return }
            registrations.yield(registration)
            guard registration.adaptersCached.isEmpty else {
                while try await messages.next() != nil {}
                return
            }
            try await responses.write(CoordinatorMessage(kind: .assignment(Assignment(
                assignmentID: "batch-1", work: .embed(EmbedBatch(texts: ["one text"], options: EmbedOptions(adapterID: "first")))))))
            while let message = try await messages.next() {
                if case .embedResult = message.kind { return }
            }
        }
        registry.serverStreaming(Methods.WorkerService.fetchAdapter.path) {
            (_: FetchAdapterRequest, chunks: RPCMessageWriter<FileChunk>, _) in
            try await FileTransfer.send(adapterDirectory, chunkSize: 0) { try await chunks.write($0) }
        }
    }
}

/// Adapter directories the worker's loader was called with, in order.
private final class LoadLog: @unchecked Sendable {
    private let lock = NSLock()
    private var loaded: [String] = []

    func append(_ name: String) { lock.withLock { loaded.append(name) } }
    var names: [String] { lock.withLock { loaded } }
}
