import CondenseCoordinator
import CondenseRPC
import CondenseWire
import Foundation
import Testing

/// A training worker driven by the test: it registers as TRAIN, hands assignments and
/// cancellations to the test, and sends the events the test gives it.
final class ScriptedTrainingWorker: Sendable {
    let client: RPCClient
    let messages: AsyncStream<CoordinatorMessage>
    private let outgoing: AsyncStream<WorkerMessage>.Continuation
    private let session: Task<Void, Never>

    init(port: Int, id: String) async throws {
        client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
        let (messages, received) = AsyncStream<CoordinatorMessage>.makeStream()
        let (outbox, outgoing) = AsyncStream<WorkerMessage>.makeStream()
        self.messages = messages
        self.outgoing = outgoing
        let client = self.client
        session = Task {
            _ = try? await client.bidirectional(
                Methods.WorkerService.connect.path, requestType: WorkerMessage.self, responseType: CoordinatorMessage.self,
                sendRequests: { writer in
                    try await writer.write(WorkerMessage(kind: .registration(Register(workerID: id, kind: .train, models: ["tiny"]))))
                    for await message in outbox { try await writer.write(message) }
                    try await Task.sleep(for: .seconds(3600))
                },
                handleResponses: { responses in
                    for try await message in responses { received.yield(message) }
                    received.finish()
                })
            received.finish()
        }
    }

    func send(_ kind: JobEvent.Kind, job: String) {
        outgoing.yield(WorkerMessage(kind: .trainEvent(JobEvent(jobID: job, kind: kind))))
    }

    /// The next assignment (skipping nothing else: the test expects assignments in order).
    func nextAssignment() async throws -> (id: String, job: TrainJob) {
        for await message in messages {
            if case .assignment(let assignment) = message.kind, case .train(let job) = assignment.work {
                return (assignment.assignmentID, job)
            }
        }
        throw RPCError(code: .unavailable, message: "session ended before an assignment")
    }

    /// Uploads `files` as a checkpoint (or the final adapter) of `job`.
    func upload(job: String, step: UInt32, final: Bool, files: [String: [UInt8]]) async throws -> UploadCheckpointResponse {
        try await client.clientStreaming(
            Methods.WorkerService.uploadCheckpoint.path, requestType: UploadCheckpointRequest.self,
            responseType: UploadCheckpointResponse.self
        ) { writer in
            try await writer.write(UploadCheckpointRequest(kind: .header(CheckpointHeader(jobID: job, step: step, isFinal: final))))
            for (name, bytes) in files.sorted(by: { $0.key < $1.key }) {
                try await writer.write(UploadCheckpointRequest(kind: .chunk(FileChunk(
                    path: name, offset: 0, data: bytes, last: true, fileSize: UInt64(bytes.count)))))
            }
        }
    }

    func kill() async {
        outgoing.finish()
        session.cancel()
        await client.close()
    }
}

extension CoordinatorSuites {
    @Suite("Fine-tuning jobs through the coordinator")
    struct FineTuneCoordinatorTests {
        let stateDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("condense-jobs-\(UUID().uuidString)").path

        static let pairs = (0..<10).map { TrainingPair(text: "text \($0)", positive: "positive \($0)") }
        static let adapterFiles: [String: [UInt8]] = [
            "adapter_config.json": Array(#"{"r": 8, "lora_alpha": 16, "target_modules": ["v_proj", "q_proj"]}"#.utf8),
            "adapter_model.safetensors": (0..<3000).map { UInt8($0 % 251) },
            "condense_recipe.json": Array(#"{"pooling": "last", "prompt_template": "This sentence: \"{text}\"", "normalize": true}"#.utf8),
        ]

        func startCluster() async throws -> TestCluster {
            let fineTune = try FineTuneCoordinator(stateDirectory: stateDirectory, logger: quietLogger)
            try await fineTune.recover()
            return try await TestCluster.start(fineTune: fineTune)
        }

        func create(_ client: RPCClient, spec: FineTuneJobSpec, pairs: [TrainingPair] = pairs) async throws -> FineTuneJob {
            try await client.clientStreaming(
                Methods.FineTuneService.createFineTuneJob.path, requestType: CreateFineTuneJobRequest.self, responseType: FineTuneJob.self
            ) { writer in
                try await writer.write(CreateFineTuneJobRequest(kind: .spec(spec)))
                if !pairs.isEmpty { try await writer.write(CreateFineTuneJobRequest(kind: .pairs(PairChunk(pairs: pairs)))) }
            }
        }

        func watch(_ client: RPCClient, _ job: String, after: UInt64 = 0) async throws -> [JobEvent] {
            try await client.serverStreaming(
                Methods.FineTuneService.watchJob.path, request: WatchJobRequest(jobID: job, afterSequence: after), responseType: JobEvent.self
            ) { events in
                var all: [JobEvent] = []
                for try await event in events { all.append(event) }
                return all
            }
        }

        func getJob(_ client: RPCClient, _ job: String) async throws -> FineTuneJob {
            try await client.unary(Methods.FineTuneService.getJob.path, request: GetJobRequest(jobID: job))
        }

        /// Polls until the job is in `state` (events are applied asynchronously to the worker's sends).
        func waitFor(_ state: JobState, _ client: RPCClient, _ job: String) async throws -> FineTuneJob {
            for _ in 0..<500 {
                let current = try await getJob(client, job)
                if current.state == state { return current }
                try await Task.sleep(for: .milliseconds(10))
            }
            let current = try await getJob(client, job)
            Issue.record("job \(job) is \(current.state), expected \(state)")
            return current
        }

        static let spec = FineTuneJobSpec(
            name: "test", hyperparameters: Hyperparameters(duration: .steps(4), batchSize: 4, checkpointEvery: 2))

        @Test func jobRunsOnAWorkerAndItsEventsReplayFromAnyCursor() async throws {
            let cluster = try await startCluster()
            let client = try await cluster.client()
            let created = try await create(client, spec: Self.spec)
            #expect(created.jobID == "ft-0001")
            #expect(created.state == .queued)
            #expect(created.pairCount == 10)
            #expect(created.totalSteps == 4)

            let worker = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-1")
            let (_, assignment) = try await worker.nextAssignment()
            #expect(assignment.jobID == "ft-0001")
            #expect(assignment.pairs == Self.pairs)
            #expect(assignment.resumeCheckpointID.isEmpty)
            #expect(assignment.spec == Self.spec)

            worker.send(.started(JobStarted()), job: "ft-0001")
            worker.send(.step(StepMetrics(step: 1, totalSteps: 4, loss: 2.5, learningRate: 1e-5)), job: "ft-0001")
            worker.send(.step(StepMetrics(step: 2, totalSteps: 4, loss: 2.0, learningRate: 2e-5)), job: "ft-0001")
            let checkpoint = try await worker.upload(job: "ft-0001", step: 2, final: false, files: Self.adapterFiles)
            #expect(checkpoint.checkpointID == "ft-0001-step-2")
            #expect(checkpoint.bytesReceived == UInt64(Self.adapterFiles.values.map(\.count).reduce(0, +)))
            worker.send(.checkpoint(CheckpointSaved(step: 2, checkpointID: checkpoint.checkpointID)), job: "ft-0001")
            let running = try await waitFor(.running, client, "ft-0001")
            #expect(running.workerID == "trainer-1")

            let final = try await worker.upload(job: "ft-0001", step: 4, final: true, files: Self.adapterFiles)
            #expect(final.checkpointID == "ft-0001")
            worker.send(.finished(JobFinished(adapterID: final.checkpointID, finalLoss: 1.5)), job: "ft-0001")
            let done = try await waitFor(.succeeded, client, "ft-0001")
            #expect(done.adapterID == "ft-0001")
            #expect(done.lastLoss == 1.5)
            #expect(done.finishedUnixMs >= done.startedUnixMs && done.startedUnixMs > 0)

            let events = try await watch(client, "ft-0001")
            #expect(events.map(\.sequence) == Array(1...6))
            #expect(events.map { Self.kindName($0) } == ["queued", "started", "step", "step", "checkpoint", "finished"])
            if case .started(let started) = events[1].kind { #expect(started.workerID == "trainer-1") }
            let resumed = try await watch(client, "ft-0001", after: 4)
            #expect(resumed.map(\.sequence) == [5, 6])
            // A cursor at the terminal event ends at once instead of waiting for events that never come.
            #expect(try await watch(client, "ft-0001", after: 6).isEmpty)

            let adapters: ListAdaptersResponse = try await client.unary(Methods.FineTuneService.listAdapters.path, request: ListAdaptersRequest())
            #expect(adapters.adapters.map(\.adapterID) == ["ft-0001"])
            let adapter = try #require(adapters.adapters.first)
            #expect(adapter.loraRank == 8)
            #expect(adapter.targetModules == ["q_proj", "v_proj"])
            #expect(adapter.pooling == .last)
            #expect(adapter.promptTemplate == #"This sentence: "{text}""#)
            #expect(adapter.files == Self.adapterFiles.keys.sorted())
            #expect(adapter.jobID == "ft-0001")

            let downloaded = try await client.serverStreaming(
                Methods.FineTuneService.downloadAdapter.path, request: DownloadAdapterRequest(adapterID: "ft-0001", chunkSize: 1000),
                responseType: FileChunk.self
            ) { chunks in
                var files: [String: [UInt8]] = [:]
                for try await chunk in chunks { files[chunk.path, default: []] += chunk.data }
                return files
            }
            #expect(downloaded == Self.adapterFiles)

            await worker.kill()
            await client.close()
            try await cluster.stop()
        }

        @Test func aLostWorkersJobResumesFromItsLastCheckpointOnAnotherWorker() async throws {
            let cluster = try await startCluster()
            let client = try await cluster.client()
            _ = try await create(client, spec: Self.spec)
            let first = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-1")
            _ = try await first.nextAssignment()
            first.send(.started(JobStarted()), job: "ft-0001")
            let checkpoint = try await first.upload(job: "ft-0001", step: 2, final: false, files: Self.adapterFiles)
            first.send(.checkpoint(CheckpointSaved(step: 2, checkpointID: checkpoint.checkpointID)), job: "ft-0001")
            _ = try await waitFor(.running, client, "ft-0001")
            // Let the checkpoint event land before the worker dies.
            for _ in 0..<500 where try await getJob(client, "ft-0001").lastSequence < 3 { try await Task.sleep(for: .milliseconds(10)) }
            await first.kill()
            _ = try await waitFor(.queued, client, "ft-0001")

            let second = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-2")
            let (_, resumed) = try await second.nextAssignment()
            #expect(resumed.resumeCheckpointID == "ft-0001-step-2")
            #expect(resumed.resumeStep == 2)
            let fetched = try await second.client.serverStreaming(
                Methods.WorkerService.fetchAdapter.path, request: FetchAdapterRequest(artifact: .checkpointID("ft-0001-step-2")),
                responseType: FileChunk.self
            ) { chunks in
                var files: [String: [UInt8]] = [:]
                for try await chunk in chunks { files[chunk.path, default: []] += chunk.data }
                return files
            }
            #expect(fetched == Self.adapterFiles)
            second.send(.started(JobStarted(resumedFromStep: 2)), job: "ft-0001")
            _ = try await waitFor(.running, client, "ft-0001")
            let events = try await watchUntil(client, "ft-0001", count: 5)
            #expect(events.map { Self.kindName($0) } == ["queued", "started", "checkpoint", "queued", "started"])
            if case .started(let started) = events.last?.kind {
                #expect(started.resumedFromStep == 2)
                #expect(started.workerID == "trainer-2")
            }
            await second.kill()
            await client.close()
            try await cluster.stop()
        }

        @Test func jobsSurviveACoordinatorRestart() async throws {
            var cluster = try await startCluster()
            var client = try await cluster.client()
            let created = try await create(client, spec: Self.spec)
            let worker = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-1")
            _ = try await worker.nextAssignment()
            worker.send(.started(JobStarted()), job: created.jobID)
            _ = try await waitFor(.running, client, created.jobID)
            await worker.kill()
            await client.close()
            try await cluster.stop()

            cluster = try await startCluster()
            client = try await cluster.client()
            let recovered = try await getJob(client, created.jobID)
            #expect(recovered.state == .queued)
            let events = try await watchUntil(client, created.jobID, count: 4)
            #expect(events.map { Self.kindName($0) }.prefix(3) == ["queued", "started", "queued"])
            let next = try await create(client, spec: Self.spec)
            #expect(next.jobID == "ft-0002")
            let again = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-1")
            let (_, assignment) = try await again.nextAssignment()
            #expect(assignment.jobID == created.jobID)
            #expect(assignment.pairs == Self.pairs)
            await again.kill()
            await client.close()
            try await cluster.stop()
        }

        @Test func cancelStopsTheWorkerAndEndsWatchers() async throws {
            let cluster = try await startCluster()
            let client = try await cluster.client()
            let created = try await create(client, spec: Self.spec)
            let worker = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-1")
            let (assignmentID, _) = try await worker.nextAssignment()
            worker.send(.started(JobStarted()), job: created.jobID)
            _ = try await waitFor(.running, client, created.jobID)
            let watcher = Task { try await watch(client, created.jobID) }

            let cancelled: FineTuneJob = try await client.unary(
                Methods.FineTuneService.cancelJob.path, request: CancelJobRequest(jobID: created.jobID, reason: "changed my mind"))
            #expect(cancelled.state == .cancelled)
            var cancelMessage: CancelAssignment?
            for await message in worker.messages {
                if case .cancel(let cancel) = message.kind { cancelMessage = cancel; break }
            }
            #expect(cancelMessage?.assignmentID == assignmentID)
            let events = try await watcher.value
            if case .cancelled(let reason) = events.last?.kind { #expect(reason.reason == "changed my mind") } else {
                Issue.record("last event \(String(describing: events.last))")
            }
            // Terminal: cancelling again changes nothing; late worker events are dropped.
            worker.send(.step(StepMetrics(step: 3, totalSteps: 4, loss: 1)), job: created.jobID)
            let again: FineTuneJob = try await client.unary(Methods.FineTuneService.cancelJob.path, request: CancelJobRequest(jobID: created.jobID))
            #expect(again.state == .cancelled)
            #expect(again.lastSequence == cancelled.lastSequence)
            await worker.kill()
            await client.close()
            try await cluster.stop()
        }

        @Test func badRequestsGetTheirStatusCodes() async throws {
            let cluster = try await startCluster()
            let client = try await cluster.client()
            func code(_ body: () async throws -> Void) async -> StatusCode? {
                do { try await body(); return nil } catch let error as RPCError { return error.code } catch { return .unknown }
            }
            #expect(await code { _ = try await create(client, spec: Self.spec, pairs: []) } == .invalidArgument)
            var badTarget = Self.spec
            badTarget.hyperparameters?.targetModules = ["qq_proj"]
            #expect(await code { _ = try await create(client, spec: badTarget) } == .invalidArgument)
            var badPrompt = Self.spec
            badPrompt.hyperparameters?.prompt = .promptTemplate("no placeholder")
            #expect(await code { _ = try await create(client, spec: badPrompt) } == .invalidArgument)
            #expect(await code { _ = try await create(client, spec: Self.spec, pairs: [TrainingPair(text: "a", positive: "")]) } == .invalidArgument)
            #expect(await code { _ = try await getJob(client, "ft-9999") } == .notFound)
            #expect(await code { _ = try await watch(client, "ft-9999") } == .notFound)
            #expect(await code {
                let _: Adapter = try await client.unary(Methods.FineTuneService.getAdapter.path, request: GetAdapterRequest(adapterID: "nope"))
            } == .notFound)
            var named = Self.spec
            named.adapterID = "mine"
            _ = try await create(client, spec: named)
            #expect(await code { _ = try await create(client, spec: named) } == .alreadyExists)
            var badID = Self.spec
            badID.adapterID = "../escape"
            #expect(await code { _ = try await create(client, spec: badID) } == .invalidArgument)
            var missingFile = Self.spec
            missingFile.pairsPath = "/nonexistent/pairs.csv"
            let failed = try await create(client, spec: missingFile, pairs: [])
            #expect(failed.state == .failed)
            #expect(failed.error.contains("/nonexistent/pairs.csv"))

            // Uploads only for a job a worker holds, and only complete files.
            let worker = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-1")
            #expect(await code { _ = try await worker.upload(job: "ft-0003", step: 1, final: false, files: [:]) } == .failedPrecondition)
            let (_, assignment) = try await worker.nextAssignment()
            let gap = await code {
                let _: UploadCheckpointResponse = try await worker.client.clientStreaming(
                    Methods.WorkerService.uploadCheckpoint.path, requestType: UploadCheckpointRequest.self
                ) { writer in
                    try await writer.write(UploadCheckpointRequest(kind: .header(CheckpointHeader(jobID: assignment.jobID, step: 1))))
                    try await writer.write(UploadCheckpointRequest(kind: .chunk(FileChunk(path: "a.bin", offset: 0, data: [1, 2], fileSize: 6))))
                    try await writer.write(UploadCheckpointRequest(kind: .chunk(FileChunk(path: "a.bin", offset: 4, data: [5, 6], last: true, fileSize: 6))))
                }
            }
            #expect(gap == .dataLoss)
            #expect(await code { _ = try await worker.upload(job: assignment.jobID, step: 1, final: false, files: ["../x": [1]]) } == .invalidArgument)
            await worker.kill()
            await client.close()
            try await cluster.stop()
        }

        /// Watches until `count` events arrived (the job is not terminal, so the stream stays open).
        func watchUntil(_ client: RPCClient, _ job: String, count: Int) async throws -> [JobEvent] {
            try await client.serverStreaming(
                Methods.FineTuneService.watchJob.path, request: WatchJobRequest(jobID: job), responseType: JobEvent.self
            ) { events in
                var all: [JobEvent] = []
                for try await event in events {
                    all.append(event)
                    if all.count == count { break }
                }
                return all
            }
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
