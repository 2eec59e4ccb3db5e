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

/// Where a training worker's base weights come from.
public enum TrainingBaseModel: Sendable {
    /// Kept in memory for the worker's life (a process that only trains).
    case resident(LoadedModel)
    /// Read from this model file when a job starts and released when it ends. For `serve`, whose embedding side
    /// holds its own packed copy of the weights: keeping these too would double the memory of an idle server.
    case file(String)

    func load() throws(FineTuneError) -> LoadedModel {
        switch self {
        case .resident(let model): return model
        case .file(let path):
            do { return try ModelLoader.load(path: path) } catch { throw .model("\(error)") }
        }
    }
}

/// A training worker: dials the coordinator, registers as TRAIN, and runs one TrainJob at a time.
/// Each job trains in its own directory; every checkpoint is uploaded (UploadCheckpoint) before its
/// `checkpoint` event goes out, so the coordinator can resume the job elsewhere from it, and the final
/// adapter is uploaded before `finished`. A job that comes with `resume_checkpoint_id` first fetches
/// that checkpoint and continues after it, bit for bit as if never interrupted. Losing the session stops
/// the job (the coordinator re-queues it); the worker reconnects with exponential backoff.
///
/// A shutdown (`WorkerShutdown`) or the coordinator's Drain hands the running job back: the current
/// step finishes, its checkpoint is uploaded, and the session ends, so the coordinator queues the job
/// to resume from that very step. After a shutdown the worker stops; after a Drain it dials again.
public struct TrainingWorker: Sendable {
    private let configuration: TrainingWorkerConfiguration
    private let weights: TrainingBaseModel
    private let modelID: String
    /// Session state and work done, for the operations port; nil when it is off.
    private let activity: WorkerActivity?
    private let logger: Logger

    public init(configuration: TrainingWorkerConfiguration, model: LoadedModel, modelID: String, activity: WorkerActivity? = nil,
                logger: Logger = Logger(label: "condense.worker.train")) {
        self.init(configuration: configuration, weights: .resident(model), modelID: modelID, activity: activity, logger: logger)
    }

    public init(configuration: TrainingWorkerConfiguration, weights: TrainingBaseModel, modelID: String,
                activity: WorkerActivity? = nil, logger: Logger = Logger(label: "condense.worker.train")) {
        self.configuration = configuration
        self.weights = weights
        self.modelID = modelID
        self.activity = activity
        self.logger = logger
    }

    /// Serves until the task is cancelled (the running job stops where it is), `shutdown` begins (the
    /// running job is handed back first), or the coordinator rejects the worker.
    public func run(until shutdown: WorkerShutdown? = nil) async throws(WorkerError) {
        let worker = self
        try await runSessions(configuration.connection, until: shutdown, logger: logger) { client in
            await worker.runSession(client, shutdown: shutdown)
        }
    }

    private func runSession(_ client: RPCClient, shutdown: WorkerShutdown?) async -> SessionOutcome {
        let (outbound, send) = AsyncStream<WorkerMessage>.makeStream()
        let registration = Register(
            workerID: configuration.connection.workerID, kind: .train, models: [modelID],
            threads: UInt32(clamping: configuration.connection.threads), memoryBytes: ProcessInfo.processInfo.physicalMemory)
        let heartbeatInterval = configuration.connection.heartbeatInterval
        let jobs = JobTasks()
        let activity = self.activity
        let logger = self.logger
        defer {
            send.finish()
            activity?.sessionClosed()
        }
        // Hands the running job back (checkpoint of the step it reached, uploaded), then ends the
        // session: the coordinator re-queues the job when the session ends.
        @Sendable func windDown(_ reason: String) async {
            logger.notice("handing back work and ending the session", metadata: ["reason": "\(reason)"])
            await jobs.handBackAll()
            send.finish()
        }
        let outcome: SessionOutcome
        do {
            let drainReason = try await client.bidirectional(
                Methods.WorkerService.connect.path, requestType: WorkerMessage.self, responseType: CoordinatorMessage.self,
                sendRequests: { writer in
                    try await writer.write(WorkerMessage(kind: .registration(registration)))
                    activity?.sessionOpened()
                    for await message in outbound { try await writer.write(message) }
                },
                handleResponses: { responses -> String? in
                    let heartbeats = Task {
                        while !Task.isCancelled {
                            do { try await Task.sleep(for: heartbeatInterval) } catch { return }
                            send.yield(WorkerMessage(kind: .heartbeat(Heartbeat(load: await jobs.isBusy ? 1 : 0,
                                                                                 queueDepth: await jobs.count))))
                        }
                    }
                    let shutdownWatch = Task {
                        guard let shutdown else { return }
                        await shutdown.wait()
                        if !Task.isCancelled { await windDown("worker shutting down") }
                    }
                    defer {
                        heartbeats.cancel()
                        shutdownWatch.cancel()
                    }
                    var drainReason: String?
                    for try await message in responses {
                        switch message.kind {
                        case .assignment(let assignment):
                            guard case .train(let job) = assignment.work else {
                                logger.error("assignment without training work", metadata: ["assignment": "\(assignment.assignmentID)"])
                                continue
                            }
                            let control = JobControl()
                            let task = Task { await train(job, client: client, send: send, control: control) }
                            await jobs.add(assignment.assignmentID, task: task, control: control)
                        case .cancel(let cancel):
                            logger.notice("job cancelled by the coordinator", metadata: ["assignment": "\(cancel.assignmentID)"])
                            await jobs.stop(cancel.assignmentID)
                        case .drain(let drain):
                            // Read on while the job winds down: the session ends when the coordinator closes it.
                            let reason = "drained by the coordinator" + (drain.reason.isEmpty ? "" : ": \(drain.reason)")
                            drainReason = reason
                            Task { await windDown(reason) }
                        case nil:
                            break
                        }
                    }
                    return drainReason
                })
            if shutdown?.isRequested == true {
                outcome = .stopped
            } else {
                // Drained: the coordinator is going away (or wants the job elsewhere); dial again later.
                outcome = .lost(drainReason ?? "the coordinator ended the session")
            }
        } catch let error as RPCError {
            switch error.code {
            case .invalidArgument, .unimplemented, .unauthenticated, .permissionDenied, .failedPrecondition: outcome = .rejected(error)
            default: outcome = shutdown?.isRequested == true ? .stopped : .lost("\(error)")
            }
        } catch {
            outcome = shutdown?.isRequested == true ? .stopped : .lost("\(error)")
        }
        // Without the session the coordinator has re-queued the job: stop training it here.
        await jobs.stopAll()
        return outcome
    }

    // MARK: One job

    /// How the training thread left a job.
    private enum TrainingOutcome: Sendable {
        case finished(loss: Double)
        /// Stopped between steps (cancelled, or the session was lost).
        case stopped
        /// Stopped between steps to hand the job back: the checkpoint of the steps done (nil before the first).
        case handedBack(checkpoint: String?, step: Int)
    }

    private func train(
        _ job: TrainJob, client: RPCClient, send: AsyncStream<WorkerMessage>.Continuation, control: JobControl
    ) async {
        func event(_ kind: JobEvent.Kind) { send.yield(WorkerMessage(kind: .trainEvent(JobEvent(jobID: job.jobID, kind: kind)))) }
        // Handed back before it began (the worker is winding down): the coordinator re-queues it as it was.
        guard control.request == .train else { return }
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
            var jobOptions = try TrainingJobOptions.options(
                spec.hyperparameters ?? Hyperparameters(), outputDirectory: directory,
                microBatchTokens: configuration.microBatchTokens, resume: resuming)
            // Every checkpoint is uploaded before the next one: the local copy only serves the next upload.
            jobOptions.keepCheckpoints = 1
            let options = jobOptions
            event(.started(JobStarted(workerID: configuration.connection.workerID, resumedFromStep: resuming ? job.resumeStep : 0)))
            log.info("training", metadata: ["job": "\(job.jobID)", "pairs": "\(pairs.count)", "resume_step": "\(job.resumeStep)"])

            let (progress, report) = AsyncStream<FineTuneProgress>.makeStream()
            let weights = self.weights, baseModel = modelID
            async let outcome: Result<TrainingOutcome, FineTuneError> = Self.onTrainingThread {
                defer { report.finish() }
                return Result { () throws(FineTuneError) -> TrainingOutcome in
                    let run = try FineTuneRun(model: try weights.load(), baseModel: baseModel, pairs: pairs, skippedPairs: skipped, options: options)
                    var lastLoss: Double?
                    // One step at a time, so a cancel or a hand-back takes effect between steps.
                    while run.completedSteps < run.totalSteps {
                        switch control.request {
                        case .stop: return .stopped
                        case .handBack: return .handedBack(checkpoint: try run.checkpoint(), step: run.completedSteps)
                        case .train: break
                        }
                        try run.run(until: run.completedSteps + 1) { step in
                            lastLoss = step.loss
                            report.yield(step)
                        }
                    }
                    return .finished(loss: lastLoss ?? 0)
                }
            }
            // The newest step the coordinator holds a checkpoint of.
            var storedStep = resuming ? Int(job.resumeStep) : 0
            for await step in progress {
                activity?.stepDone()
                event(.step(StepMetrics(
                    step: UInt32(step.step), totalSteps: UInt32(step.totalSteps), loss: Float(step.loss),
                    learningRate: step.learningRate, pairsPerSecond: Float(step.pairsPerSecond),
                    etaSeconds: Float(step.secondsRemaining))))
                // The last step's checkpoint is the final adapter, uploaded below.
                if let checkpoint = step.checkpoint, step.step < step.totalSteps, control.request != .stop {
                    let stored = try await upload(checkpoint, job: job.jobID, step: UInt32(step.step), final: false, client: client)
                    event(.checkpoint(CheckpointSaved(step: UInt32(step.step), checkpointID: stored.checkpointID)))
                    storedStep = step.step
                }
            }
            switch await outcome {
            case .success(.stopped):
                activity?.jobEnded(.stopped)
                log.notice("job stopped", metadata: ["job": "\(job.jobID)"])
            case .success(.handedBack(let checkpoint, let step)):
                if let checkpoint, step > storedStep {
                    let stored = try await upload(checkpoint, job: job.jobID, step: UInt32(step), final: false, client: client)
                    event(.checkpoint(CheckpointSaved(step: UInt32(step), checkpointID: stored.checkpointID)))
                    storedStep = step
                }
                activity?.jobEnded(.handedBack)
                log.notice("job handed back", metadata: ["job": "\(job.jobID)", "resume_step": "\(storedStep)"])
                // The coordinator holds what the next worker needs.
                try? FileManager.default.removeItem(atPath: directory)
            case .success(.finished(let loss)):
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
            // Stopping or handing back: an upload cut short is not the job's failure (the coordinator
            // resumes it from the checkpoint it holds).
            guard control.request == .train else {
                activity?.jobEnded(.stopped)
                log.notice("job stopped", metadata: ["job": "\(job.jobID)", "error": "\(error)"])
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

/// What the session asks of a running job, read by the training thread between steps.
final class JobControl: @unchecked Sendable {
    enum Request: Sendable {
        /// Keep training.
        case train
        /// Checkpoint the steps done and end, for another worker to resume.
        case handBack
        /// End without a checkpoint (cancelled, or the session is gone).
        case stop
    }

    private let lock = NSLock()
    private var current = Request.train

    var request: Request { lock.withLock { current } }

    /// Stopping overrides a hand-back; nothing undoes a stop.
    func raise(_ request: Request) {
        lock.withLock {
            if current != .stop { current = request }
        }
    }
}

/// The jobs of one session.
private actor JobTasks {
    private var jobs: [String: (task: Task<Void, Never>, control: JobControl)] = [:]
    /// False once the session winds down: a job assigned after that is handed back untouched.
    private var accepting = true

    var count: UInt32 { UInt32(jobs.count) }
    var isBusy: Bool { !jobs.isEmpty }

    func add(_ assignment: String, task: Task<Void, Never>, control: JobControl) {
        if !accepting { control.raise(.handBack) }
        jobs[assignment] = (task, control)
        Task { await task.value; self.remove(assignment) }
    }

    private func remove(_ assignment: String) { jobs[assignment] = nil }

    func stop(_ assignment: String) { jobs[assignment]?.control.raise(.stop) }

    func stopAll() async {
        for job in jobs.values { job.control.raise(.stop) }
        for job in jobs.values { await job.task.value }
    }

    /// Hands back every job, those assigned while this waits included, and waits until they ended.
    func handBackAll() async {
        accepting = false
        for job in jobs.values { job.control.raise(.handBack) }
        while let (assignment, job) = jobs.first {
            await job.task.value
            jobs[assignment] = nil
        }
    }
}
