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
    @Suite("Training workers run fine-tuning jobs", .enabled(if: TrainingFixtures.model != nil, "tiny-llama fixture missing"))
    struct TrainingWorkerTests {
        let stateDirectory = TrainingFixtures.temporaryDirectory("state")

        /// A job long enough that a worker killed at its first checkpoint event is still mid-run.
        static let spec = FineTuneJobSpec(
            name: "tiny", hyperparameters: Hyperparameters(
                duration: .steps(40), batchSize: 4, learningRate: 1e-3, warmupSteps: 2, loraRank: 4, loraAlpha: 8,
                loraDropout: 0.1, temperature: 0.2, maxTokens: 24, seed: 7, checkpointEvery: 2))

        func startWorker(_ id: String, port: Int) -> Task<Void, Never> {
            let worker = TrainingWorker(
                configuration: TrainingWorkerConfiguration(
                    connection: CoordinatorConnection(host: "127.0.0.1", port: port, workerID: id, heartbeatInterval: .milliseconds(100)),
                    workDirectory: TrainingFixtures.temporaryDirectory(id)),
                model: TrainingFixtures.model!, modelID: "tiny-llama", logger: quietLogger)
            return Task { try? await worker.run() }
        }

        /// The adapter a local `FineTuneRun` produces with the same settings, uninterrupted.
        static func localAdapter() throws -> [UInt8] {
            let out = TrainingFixtures.temporaryDirectory("local")
            var options = FineTuneOptions(outputDirectory: out)
            let parameters = try #require(spec.hyperparameters)
            options.training = TrainingConfiguration(
                lora: LoRAConfiguration(rank: 4, alpha: 8, dropout: 0.1), learningRate: 1e-3, warmupSteps: 2,
                temperature: 0.2, microBatchTokens: FineTuneOptions.defaultMicroBatchTokens, seed: parameters.seed ?? 0)
            options.embedding = EmbeddingOptions(
                prompt: try PromptTemplate(nameOrTemplate: "cluster1"), pooling: CondenseEmbedding.Pooling.mean, normalize: true, maxTokens: 24)
            options.batchSize = 4
            options.steps = 40
            options.checkpointEvery = 2
            let run = try FineTuneRun(model: TrainingFixtures.model!, baseModel: "tiny-llama", pairs: TrainingFixtures.pairs, options: options)
            try run.run()
            return try #require(FileManager.default.contents(atPath: out + "/adapter_model.safetensors")).map { $0 }
        }

        @Test func aJobTrainsOnAWorkerAndResumesBitIdenticallyAfterTheWorkerDies() async throws {
            let expected = try Self.localAdapter()
            let fineTune = try FineTuneCoordinator(stateDirectory: stateDirectory, logger: quietLogger)
            let cluster = try await TestCluster.start(fineTune: fineTune)
            let client = try await cluster.client()
            let job: FineTuneJob = try await client.clientStreaming(
                Methods.FineTuneService.createFineTuneJob.path, requestType: CreateFineTuneJobRequest.self
            ) { writer in
                try await writer.write(CreateFineTuneJobRequest(kind: .spec(Self.spec)))
                try await writer.write(CreateFineTuneJobRequest(kind: .pairs(PairChunk(
                    pairs: TrainingFixtures.pairs.map { TrainingPair(text: $0.text, positive: $0.positive) }))))
            }

            // The first worker dies as soon as it has stored a checkpoint.
            let first = startWorker("trainer-1", port: cluster.port)
            var seen: [JobEvent] = []
            try await client.serverStreaming(
                Methods.FineTuneService.watchJob.path, request: WatchJobRequest(jobID: job.jobID), responseType: JobEvent.self
            ) { events in
                for try await event in events {
                    seen.append(event)
                    if case .checkpoint = event.kind { break }
                }
            }
            first.cancel()
            _ = await first.value
            let second = startWorker("trainer-2", port: cluster.port)
            let rest = try await client.serverStreaming(
                Methods.FineTuneService.watchJob.path, request: WatchJobRequest(jobID: job.jobID, afterSequence: seen.last?.sequence ?? 0),
                responseType: JobEvent.self
            ) { events in
                var all: [JobEvent] = []
                for try await event in events { all.append(event) }
                return all
            }
            let all = seen + rest
            #expect(all.map(\.sequence) == Array(1...UInt64(all.count)))
            let resumedStarts = all.compactMap { event -> JobStarted? in
                if case .started(let started) = event.kind, started.resumedFromStep > 0 { return started }
                return nil
            }
            #expect(resumedStarts.first?.workerID == "trainer-2", "the job resumed on the second worker from a checkpoint")
            guard case .finished(let finished) = all.last?.kind else {
                Issue.record("job did not finish: \(String(describing: all.last))")
                return
            }
            let done: FineTuneJob = try await client.unary(Methods.FineTuneService.getJob.path, request: GetJobRequest(jobID: job.jobID))
            #expect(done.state == .succeeded)
            #expect(done.step == 40)

            let files = try await client.serverStreaming(
                Methods.FineTuneService.downloadAdapter.path, request: DownloadAdapterRequest(adapterID: finished.adapterID),
                responseType: FileChunk.self
            ) { chunks in
                var files: [String: [UInt8]] = [:]
                for try await chunk in chunks { files[chunk.path, default: []] += chunk.data }
                return files
            }
            #expect(Set(files.keys).isSuperset(of: ["adapter_config.json", "adapter_model.safetensors", "condense_recipe.json"]))
            #expect(files["adapter_model.safetensors"] == expected, "interrupted + resumed on another worker = uninterrupted local run")

            second.cancel()
            await client.close()
            try await cluster.stop()
        }
    }
}

enum TrainingFixtures {
    static let model: LoadedModel? = try? ModelLoader.load(path: Fixtures.tinyLlama)

    static let pairs: [TextPair] = (0..<24).map { index in
        let words = ["alpha", "river", "stone", "quick", "blue", "cloud", "seven", "lamp", "north", "green", "paper"]
        let text = (0..<(2 + index % 5)).map { words[(index + $0 * 3) % words.count] }.joined(separator: " ") + " \(index)"
        return TextPair(text: text, positive: text + " again")
    }

    static func temporaryDirectory(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("condense-\(name)-\(UUID().uuidString)").path
    }
}
