import CondenseModel
import CondenseRPC
import CondenseTraining
import CondenseWire
import Foundation
import Logging

/// A training worker's settings.
public struct TrainingWorkerConfiguration: Sendable {
    public var connection: CoordinatorConnection
    /// Local scratch space: one directory per job (checkpoints, final adapter) until it is uploaded.
    public var workDirectory: String
    /// Token budget of a forward/backward pass when the job does not set `micro_batch_size` (memory).
    public var microBatchTokens: Int

    public init(
        connection: CoordinatorConnection, workDirectory: String, microBatchTokens: Int = FineTuneOptions.defaultMicroBatchTokens
    ) {
        self.connection = connection
        self.workDirectory = workDirectory
        self.microBatchTokens = microBatchTokens
    }
}

/// A training worker: dials the coordinator, registers as TRAIN, and runs one TrainJob at a time.
/// Each job trains in its own directory; every checkpoint is uploaded (UploadCheckpoint) before its
/// `checkpoint` event goes out, so the coordinator can resume the job elsewhere from it, and the final
/// adapter is uploaded before `finished`. A job that comes with `resume_checkpoint_id` first fetches
/// that checkpoint and continues after it, bit for bit as if never interrupted. Losing the session stops
/// the job (the coordinator re-queues it); the worker reconnects with exponential backoff.
public struct TrainingWorker: Sendable {
    private let configuration: TrainingWorkerConfiguration
    private let model: LoadedModel
    private let modelID: String
    /// Session state and work done, for the operations port; nil when it is off.
    private let activity: WorkerActivity?
    private let logger: Logger

    public init(configuration: TrainingWorkerConfiguration, model: LoadedModel, modelID: String, activity: WorkerActivity? = nil,
                logger: Logger = Logger(label: "condense.worker.train")) {
        self.configuration = configuration
        self.model = model
        self.modelID = modelID
        self.activity = activity
        self.logger = logger
    }

    /// Serves until the task is cancelled, the coordinator drains this worker, or it rejects it.
    public func run() async throws(WorkerError) {
        try await runCoordinatorSessions(configuration.connection, logger: logger, session: runSession)
    }

    private func runSession(_ client: RPCClient) async -> SessionOutcome {
        let (outbound, send) = AsyncStream<WorkerMessage>.makeStream()
        let registration = Register(
            workerID: configuration.connection.workerID, kind: .train, models: [modelID],
            threads: UInt32(clamping: configuration.connection.threads), memoryBytes: ProcessInfo.processInfo.physicalMemory)
        let heartbeatInterval = configuration.connection.heartbeatInterval
        let jobs = JobTasks()
        let activity = self.activity
        defer {
            send.finish()
            activity?.sessionClosed()
        }
        do {
            let drained = try await client.bidirectional(
                Methods.WorkerService.connect.path, requestType: WorkerMessage.self, responseType: CoordinatorMessage.self,
                sendRequests: { writer in
                    try await writer.write(WorkerMessage(kind: .registration(registration)))
                    activity?.sessionOpened()
                    for await message in outbound { try await writer.write(message) }
                },
                handleResponses: { responses in
                    let heartbeats = Task {
                        while !Task.isCancelled {
                            do { try await Task.sleep(for: heartbeatInterval) } catch { return }
                            send.yield(WorkerMessage(kind: .heartbeat(Heartbeat(load: await jobs.isBusy ? 1 : 0,
                                                                                 queueDepth: await jobs.count))))
                        }
                    }
                    defer { heartbeats.cancel() }
                    for try await message in responses {
                        switch message.kind {
                        case .assignment(let assignment):
                            guard case .train(let job) = assignment.work else {
                                logger.error("assignment without training work", metadata: ["assignment": "\(assignment.assignmentID)"])
                                continue
                            }
                            let stop = StopFlag()
                            let task = Task { await train(job, client: client, send: send, stop: stop) }
                            await jobs.add(assignment.assignmentID, task: task, stop: stop)
                        case .cancel(let cancel):
                            logger.notice("job cancelled by the coordinator", metadata: ["assignment": "\(cancel.assignmentID)"])
                            await jobs.stop(cancel.assignmentID)
                        case .drain(let drain):
                            logger.notice("draining", metadata: ["reason": "\(drain.reason)"])
                            await jobs.waitForAll()
                            return true
                        case nil:
                            break
                        }
                    }
                    return false
                })
            // Without the session the coordinator has re-queued the job: stop training it here.
            await jobs.stopAll()
            return drained ? .drained : .lost("the coordinator ended the session")
        } catch let error as RPCError {
            await jobs.stopAll()
            switch error.code {
            case .invalidArgument, .unimplemented, .unauthenticated, .permissionDenied, .failedPrecondition: return .rejected(error)
            default: return .lost("\(error)")
            }
        } catch {
            await jobs.stopAll()
            return .lost("\(error)")
        }
    }

    // MARK: One job

    private func train(
        _ job: TrainJob, client: RPCClient, send: AsyncStream<WorkerMessage>.Continuation, stop: StopFlag
    ) async {
        func event(_ kind: JobEvent.Kind) { send.yield(WorkerMessage(kind: .trainEvent(JobEvent(jobID: job.jobID, kind: kind)))) }
        let directory = (configuration.workDirectory as NSString).appendingPathComponent(job.jobID)
        let log = logger
        do {
            try? FileManager.default.removeItem(atPath: directory)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let resuming = !job.resumeCheckpointID.isEmpty
            if resuming {
                try await fetchCheckpoint(job.resumeCheckpointID, step: job.resumeStep, into: directory, client: client)
            }
            let spec = job.spec ?? FineTuneJobSpec()
            let file = job.pairs.isEmpty
                ? try PairsFile.read(path: spec.pairsPath)
                : PairsFile(pairs: job.pairs.map { TextPair(text: $0.text, positive: $0.positive) }, skippedEmptyRows: 0)
            let pairs = file.pairs, skipped = file.skippedEmptyRows
            let options = try TrainingJobOptions.options(
                spec.hyperparameters ?? Hyperparameters(), outputDirectory: directory,
                microBatchTokens: configuration.microBatchTokens, resume: resuming)
            event(.started(JobStarted(workerID: configuration.connection.workerID, resumedFromStep: resuming ? job.resumeStep : 0)))
            log.info("training", metadata: ["job": "\(job.jobID)", "pairs": "\(pairs.count)", "resume_step": "\(job.resumeStep)"])

            let (progress, report) = AsyncStream<FineTuneProgress>.makeStream()
            let model = self.model, baseModel = modelID
            async let outcome: Result<Double?, FineTuneError> = Self.onTrainingThread {
                defer { report.finish() }
                return Result { () throws(FineTuneError) -> Double? in
                    let run = try FineTuneRun(model: model, baseModel: baseModel, pairs: pairs, skippedPairs: skipped, options: options)
                    var lastLoss: Double?
                    // One step at a time, so a cancel takes effect between steps.
                    while run.completedSteps < run.totalSteps {
                        if stop.isSet { return nil }
                        try run.run(until: run.completedSteps + 1) { step in
                            lastLoss = step.loss
                            report.yield(step)
                        }
                    }
                    return lastLoss ?? 0
                }
            }
            for await step in progress {
                activity?.stepDone()
                event(.step(StepMetrics(
                    step: UInt32(step.step), totalSteps: UInt32(step.totalSteps), loss: Float(step.loss),
                    learningRate: step.learningRate, pairsPerSecond: Float(step.pairsPerSecond),
                    etaSeconds: Float(step.secondsRemaining))))
                // The last step's checkpoint is the final adapter, uploaded below.
                if let checkpoint = step.checkpoint, step.step < step.totalSteps, !stop.isSet {
                    let stored = try await upload(checkpoint, job: job.jobID, step: UInt32(step.step), final: false, client: client)
                    event(.checkpoint(CheckpointSaved(step: UInt32(step.step), checkpointID: stored.checkpointID)))
                }
            }
            switch await outcome {
            case .success(nil):
                activity?.jobEnded(.stopped)
                log.notice("job stopped", metadata: ["job": "\(job.jobID)"])
            case .success(let loss?):
                let stored = try await upload(directory, job: job.jobID, step: 0, final: true, client: client)
                event(.finished(JobFinished(adapterID: stored.checkpointID, finalLoss: Float(loss))))
                activity?.jobEnded(.succeeded)
                log.notice("job finished", metadata: ["job": "\(job.jobID)", "adapter": "\(stored.checkpointID)"])
                try? FileManager.default.removeItem(atPath: directory)
            case .failure(let error):
                event(.failed(JobFailed(reason: error.description)))
                activity?.jobEnded(.failed)
            }
        } catch {
            guard !stop.isSet else {
                activity?.jobEnded(.stopped)
                return
            }
            activity?.jobEnded(.failed)
            log.error("job failed", metadata: ["job": "\(job.jobID)", "error": "\(error)"])
            event(.failed(JobFailed(reason: "\(error)")))
        }
    }

    private func fetchCheckpoint(_ id: String, step: UInt32, into directory: String, client: RPCClient) async throws {
        // FineTuneRun resumes from the newest `checkpoint-<step>` directory of its output.
        var receiver = try FileTransfer.Receiver(directory: (directory as NSString).appendingPathComponent("checkpoint-\(step)"))
        try await client.serverStreaming(
            Methods.WorkerService.fetchAdapter.path, request: FetchAdapterRequest(artifact: .checkpointID(id)), responseType: FileChunk.self
        ) { chunks in
            for try await chunk in chunks { try receiver.receive(chunk) }
            try receiver.finish()
        }
    }

    private func upload(_ directory: String, job: String, step: UInt32, final: Bool, client: RPCClient) async throws -> UploadCheckpointResponse {
        try await client.clientStreaming(
            Methods.WorkerService.uploadCheckpoint.path, requestType: UploadCheckpointRequest.self,
            responseType: UploadCheckpointResponse.self
        ) { writer in
            try await writer.write(UploadCheckpointRequest(kind: .header(CheckpointHeader(jobID: job, step: step, isFinal: final))))
            try await FileTransfer.send(directory, chunkSize: FileTransfer.defaultChunkSize) {
                try await writer.write(UploadCheckpointRequest(kind: .chunk($0)))
            }
        }
    }

    /// Training blocks for minutes: it runs on a thread of its own, not on the cooperative pool that
    /// keeps the session (heartbeats, uploads) alive.
    private static func onTrainingThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: body()) }
            thread.stackSize = 16 << 20
            thread.start()
        }
    }
}

/// Set once to stop a job between steps; read from the training thread.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false

    var isSet: Bool { lock.withLock { set } }
    func raise() { lock.withLock { set = true } }
}

/// The jobs of one session.
private actor JobTasks {
    private var jobs: [String: (task: Task<Void, Never>, stop: StopFlag)] = [:]

    var count: UInt32 { UInt32(jobs.count) }
    var isBusy: Bool { !jobs.isEmpty }

    func add(_ assignment: String, task: Task<Void, Never>, stop: StopFlag) {
        jobs[assignment] = (task, stop)
        Task { await task.value; self.remove(assignment) }
    }

    private func remove(_ assignment: String) { jobs[assignment] = nil }

    func stop(_ assignment: String) { jobs[assignment]?.stop.raise() }

    func stopAll() async {
        for job in jobs.values { job.stop.raise() }
        for job in jobs.values { await job.task.value }
    }

    func waitForAll() async {
        for job in jobs.values { await job.task.value }
    }
}
