import CondenseRPC
import CondenseWire
import Foundation
import Logging

/// The coordinator's fine-tuning half: `FineTuneService` for clients, and the checkpoint and adapter
/// transfers of `WorkerService` for training workers. Jobs, events and adapters are durable in the
/// state directory (`JobStore`, `ArtifactStore`); the queue is rebuilt from them by `recover()`.
public struct FineTuneCoordinator: Sendable {
    /// Most pairs one job may upload (they travel to the worker in one assignment message).
    public static let maxUploadedPairs = 200_000

    let store: JobStore
    let artifacts: ArtifactStore
    let scheduler: TrainingScheduler
    private let hub: JobEventHub
    /// Checkpoints kept per job: older ones are deleted once the job's newest is recorded (0 = keep all).
    private let keepCheckpoints: Int
    private let gate = ShutdownGate(retryAfterMs: 1000)
    private let logger: Logger

    public init(stateDirectory: String, heartbeatTimeout: Duration = .seconds(15), keepCheckpoints: Int = 2,
                logger: Logger = Logger(label: "condense.coordinator.jobs")) throws(RPCError) {
        store = try JobStore(directory: stateDirectory)
        artifacts = try ArtifactStore(stateDirectory: stateDirectory)
        hub = JobEventHub()
        scheduler = TrainingScheduler(store: store, hub: hub, heartbeatTimeout: heartbeatTimeout, logger: logger)
        self.keepCheckpoints = max(0, keepCheckpoints)
        self.logger = logger
    }

    /// Re-queues the jobs a previous run left unfinished. Call once before serving.
    public func recover() async throws(RPCError) {
        try await scheduler.recover()
    }

    public var trainingWorkerCount: Int { get async { await scheduler.workerCount } }
    /// Whether a training session is open, or one that ended is still re-queueing its job.
    var hasTrainingSessions: Bool { get async { await scheduler.hasSessions } }

    // MARK: Shutdown

    /// First step of a shutdown: new calls get UNAVAILABLE, nothing more is assigned, watchers are
    /// told to watch again later, and every training worker is drained (it hands its job back at the
    /// step it reached). Checkpoint uploads of the workers winding down are still accepted.
    func beginShutdown(reason: String, deadlineMs: UInt32) async {
        gate.close()
        await scheduler.beginShutdown(reason: reason, deadlineMs: deadlineMs)
        await hub.closeAll()
    }

    /// Last step: jobs whose workers did not hand back in time are re-queued in the store (from their
    /// newest checkpoint), so the store holds every unfinished job as QUEUED.
    func finishShutdown(reason: String) async {
        await scheduler.detachAll(reason: reason)
    }
    public var queuedJobCount: Int { get async { await scheduler.queuedJobCount } }

    func evictSilentWorkers() async { await scheduler.evictSilentWorkers() }

    /// Whether the store holds a finished adapter with this id (what `EmbedOptions.adapter_id` may name).
    public func adapterExists(_ id: String) async throws(RPCError) -> Bool {
        try await store.adapter(id) != nil
    }

    // MARK: Registration

    public func register(in registry: inout RPCMethodRegistry) {
        let coordinator = self
        // Client calls are refused once the coordinator shuts down; the workers' transfers are not
        // (a worker handing its job back uploads a checkpoint).
        let gate = self.gate
        registry.clientStreaming(Methods.FineTuneService.createFineTuneJob.path) {
            (requests: RPCMessageStream<CreateFineTuneJobRequest>, _) -> FineTuneJob in
            try gate.admit()
            return try await coordinator.createJob(requests)
        }
        registry.serverStreaming(Methods.FineTuneService.watchJob.path) {
            (request: WatchJobRequest, events: RPCMessageWriter<JobEvent>, _) in
            try gate.admit()
            try await coordinator.watch(request, into: events)
        }
        registry.unary(Methods.FineTuneService.getJob.path) { (request: GetJobRequest, _) -> FineTuneJob in
            try gate.admit()
            return try await coordinator.store.job(request.jobID)
        }
        registry.unary(Methods.FineTuneService.listJobs.path) { (request: ListJobsRequest, _) -> ListJobsResponse in
            try gate.admit()
            return ListJobsResponse(jobs: try await coordinator.store.jobs(states: request.states, limit: Int(request.limit)))
        }
        registry.unary(Methods.FineTuneService.cancelJob.path) { (request: CancelJobRequest, _) -> FineTuneJob in
            try gate.admit()
            return try await coordinator.scheduler.cancel(request.jobID, reason: request.reason)
        }
        registry.unary(Methods.FineTuneService.listAdapters.path) { (_: ListAdaptersRequest, _) -> ListAdaptersResponse in
            try gate.admit()
            return ListAdaptersResponse(adapters: try await coordinator.store.adapters())
        }
        registry.unary(Methods.FineTuneService.getAdapter.path) { (request: GetAdapterRequest, _) -> Adapter in
            try gate.admit()
            guard let adapter = try await coordinator.store.adapter(request.adapterID) else {
                throw RPCError(code: .notFound, message: "unknown adapter '\(request.adapterID)'")
            }
            return adapter
        }
        registry.serverStreaming(Methods.FineTuneService.downloadAdapter.path) {
            (request: DownloadAdapterRequest, chunks: RPCMessageWriter<FileChunk>, _) in
            try gate.admit()
            guard try await coordinator.store.adapter(request.adapterID) != nil else {
                throw RPCError(code: .notFound, message: "unknown adapter '\(request.adapterID)'")
            }
            let path = try coordinator.artifacts.adapterPath(request.adapterID)
            try await FileTransfer.send(path, chunkSize: Int(request.chunkSize)) { try await chunks.write($0) }
        }
        registry.serverStreaming(Methods.WorkerService.fetchAdapter.path) {
            (request: FetchAdapterRequest, chunks: RPCMessageWriter<FileChunk>, _) in
            let path: String
            switch request.artifact {
            case .adapterID(let id):
                guard try await coordinator.store.adapter(id) != nil else { throw RPCError(code: .notFound, message: "unknown adapter '\(id)'") }
                path = try coordinator.artifacts.adapterPath(id)
            case .checkpointID(let id):
                path = try coordinator.artifacts.checkpointPath(id)
                guard FileManager.default.fileExists(atPath: path) else { throw RPCError(code: .notFound, message: "unknown checkpoint '\(id)'") }
            case nil:
                throw RPCError(code: .invalidArgument, message: "FetchAdapter without an adapter_id or checkpoint_id")
            }
            try await FileTransfer.send(path, chunkSize: Int(request.chunkSize)) { try await chunks.write($0) }
        }
        registry.clientStreaming(Methods.WorkerService.uploadCheckpoint.path) {
            (requests: RPCMessageStream<UploadCheckpointRequest>, _) -> UploadCheckpointResponse in
            try await coordinator.receiveUpload(requests)
        }
    }

    // MARK: Worker sessions

    /// A training worker's Connect session after its Register: assignments out through `relay`,
    /// events in.
    func serveTrainingSession<Messages: AsyncIteratorProtocol>(
        _ registration: Register, messages: inout Messages, relay: AsyncStream<CoordinatorMessage>.Continuation
    ) async throws where Messages.Element == WorkerMessage {
        guard !registration.workerID.isEmpty else { throw RPCError(code: .invalidArgument, message: "Register.worker_id is empty") }
        let scheduler = self.scheduler
        let (session, outbound) = await scheduler.attach(registration)
        async let forwarding: Void = {
            for await message in outbound { relay.yield(message) }
            relay.finish()
        }()
        do {
            while let message = try await messages.next() {
                switch message.kind {
                case .heartbeat: await scheduler.heartbeat(session)
                case .trainEvent(let event):
                    try await scheduler.event(from: session, event)
                    if case .checkpoint = event.kind { await pruneCheckpoints(of: event.jobID) }
                case .registration: throw RPCError(code: .invalidArgument, message: "Register sent twice in one session")
                case .embedResult: throw RPCError(code: .invalidArgument, message: "a training worker sent an embedding result")
                case nil: throw RPCError(code: .invalidArgument, message: "WorkerMessage without a kind")
                }
            }
        } catch {
            await Self.detach(session, scheduler, "\(error)")
            await forwarding
            throw error
        }
        await Self.detach(session, scheduler, "session ended by the worker")
        await forwarding
    }

    /// Keeps the newest `keepCheckpoints` of the job's stored checkpoints, and always the one the store
    /// resumes from. Runs once a checkpoint event is recorded: a newer checkpoint is complete by then.
    private func pruneCheckpoints(of job: String) async {
        guard keepCheckpoints > 0 else { return }
        do {
            let resume = try await store.resumePoint(job)
            try artifacts.pruneCheckpoints(of: job, keeping: keepCheckpoints, protecting: resume?.checkpointID)
        } catch {
            logger.warning("cannot prune checkpoints", metadata: ["job": "\(job)", "error": "\(error)"])
        }
    }

    /// Runs outside the session's task: a closed connection cancels that task, and the job must still
    /// be re-queued in the store.
    private static func detach(_ session: UInt64, _ scheduler: TrainingScheduler, _ reason: String) async {
        await Task { await scheduler.detach(session, reason: reason) }.value
    }

    // MARK: Handlers

    private func createJob(_ requests: RPCMessageStream<CreateFineTuneJobRequest>) async throws -> FineTuneJob {
        func invalid(_ message: String) -> RPCError { RPCError(code: .invalidArgument, message: message) }
        var spec: FineTuneJobSpec?
        var pairs: [TrainingPair] = []
        for try await message in requests {
            switch message.kind {
            case .spec(let received):
                guard spec == nil else { throw invalid("spec sent after the first message") }
                try FineTuneSpecCheck.validate(received)
                spec = received
            case .pairs(let chunk):
                guard let spec else { throw invalid("the first CreateFineTuneJob message must carry the spec") }
                guard spec.pairsPath.isEmpty else { throw invalid("pairs uploaded although pairs_path is set") }
                for (offset, pair) in chunk.pairs.enumerated() where pair.text.isEmpty || pair.positive.isEmpty {
                    throw invalid("pair \(pairs.count + offset + 1) has an empty \(pair.text.isEmpty ? "text" : "positive")")
                }
                pairs += chunk.pairs
                guard pairs.count <= Self.maxUploadedPairs else {
                    throw invalid("more than \(Self.maxUploadedPairs) pairs uploaded; reference a server-side file with pairs_path")
                }
            case nil:
                throw invalid("CreateFineTuneJobRequest without spec or pairs")
            }
        }
        guard let spec else { throw invalid("CreateFineTuneJob without a spec") }
        let batch = Int(spec.hyperparameters?.batchSize ?? 0)
        if spec.pairsPath.isEmpty {
            guard !pairs.isEmpty else { throw invalid("no training pairs: upload pairs or set pairs_path") }
            guard pairs.count >= max(2, batch) || batch == 0 && pairs.count >= 2 else {
                throw invalid("\(pairs.count) pairs cannot fill a batch of \(batch == 0 ? 2 : batch)")
            }
        }
        if !spec.adapterID.isEmpty, try await store.adapterIDTaken(spec.adapterID) {
            throw RPCError(code: .alreadyExists, message: "adapter id '\(spec.adapterID)' is already taken")
        }
        let uploaded = spec.pairsPath.isEmpty ? pairs : nil
        let job = try await store.createJob(
            spec: spec, pairs: uploaded, pairCount: UInt64(pairs.count),
            totalSteps: uploaded.map { FineTuneSpecCheck.totalSteps(spec, pairCount: $0.count) } ?? 0)
        if !spec.pairsPath.isEmpty, !FileManager.default.isReadableFile(atPath: spec.pairsPath) {
            try await scheduler.record(.failed(JobFailed(reason: "pairs_path \(spec.pairsPath) is not a readable file")), job: job.jobID)
            return try await store.job(job.jobID)
        }
        logger.info("job created", metadata: ["job": "\(job.jobID)", "pairs": "\(pairs.count)", "name": "\(spec.name)"])
        try await scheduler.enqueue(job.jobID)
        return try await store.job(job.jobID)
    }

    /// Replays stored events after the cursor, then live ones, ending after the terminal event.
    private func watch(_ request: WatchJobRequest, into events: RPCMessageWriter<JobEvent>) async throws {
        let (subscription, live) = await hub.subscribe(request.jobID)
        do {
            var last = request.afterSequence
            // Subscribed before reading the log: an event is in the replay, live, or both.
            func send(_ batch: [JobEvent]) async throws -> Bool {
                for event in batch where event.sequence > last {
                    try await events.write(event)
                    last = event.sequence
                    if event.isTerminal { return true }
                }
                return false
            }
            var finished = try await send(store.events(of: request.jobID, after: last))
            // Ended already (a cursor at or past the terminal event, or it ended during the replay):
            // send what is left of the log and stop, instead of waiting for events that never come.
            if !finished, try await store.job(request.jobID).state.isTerminal {
                _ = try await send(store.events(of: request.jobID, after: last))
                finished = true
            }
            if !finished {
                for await event in live {
                    // Events may be published out of order; the log fills any gap.
                    let batch = event.sequence > last + 1 ? try await store.events(of: request.jobID, after: last) : [event]
                    if try await send(batch) { finished = true; break }
                }
            }
            if !finished {
                // The live stream ended before the job: the coordinator is shutting down.
                finished = try await send(store.events(of: request.jobID, after: last))
                if !finished {
                    throw RPCError(
                        code: .unavailable, message: "the server is shutting down; watch again after sequence \(last)", retryAfterMs: 1000)
                }
            }
            await hub.unsubscribe(request.jobID, subscription)
        } catch {
            await hub.unsubscribe(request.jobID, subscription)
            throw error
        }
    }

    /// A worker's checkpoint or final adapter: stored under its id once complete.
    private func receiveUpload(_ requests: RPCMessageStream<UploadCheckpointRequest>) async throws -> UploadCheckpointResponse {
        var header: CheckpointHeader?
        var receiver: FileTransfer.Receiver?
        for try await message in requests {
            switch message.kind {
            case .header(let received):
                guard header == nil else { throw RPCError(code: .invalidArgument, message: "checkpoint header sent twice") }
                guard await scheduler.holds(received.jobID) else {
                    throw RPCError(code: .failedPrecondition, message: "job '\(received.jobID)' is not running on any worker")
                }
                header = received
                receiver = try FileTransfer.Receiver(directory: artifacts.incomingDirectory())
            case .chunk(let chunk):
                guard receiver != nil else { throw RPCError(code: .invalidArgument, message: "file chunk before the checkpoint header") }
                try receiver?.receive(chunk)
            case nil:
                throw RPCError(code: .invalidArgument, message: "UploadCheckpointRequest without header or chunk")
            }
        }
        guard let header, var receiver else { throw RPCError(code: .invalidArgument, message: "UploadCheckpoint without a header") }
        do { try receiver.finish() } catch {
            try? FileManager.default.removeItem(atPath: receiver.directory)
            throw error
        }
        let job = try await store.job(header.jobID)
        if header.isFinal {
            let id = job.spec?.adapterID.isEmpty == false ? job.spec?.adapterID ?? job.jobID : job.jobID
            let path = try artifacts.adapterPath(id)
            try artifacts.commit(receiver.directory, to: path)
            try await store.addAdapter(AdapterRecord.describe(id: id, job: job, directory: path, artifacts: artifacts))
            return UploadCheckpointResponse(checkpointID: id, bytesReceived: receiver.totalBytes)
        }
        let id = ArtifactStore.checkpointID(job: header.jobID, step: header.step)
        try artifacts.commit(receiver.directory, to: artifacts.checkpointPath(id))
        return UploadCheckpointResponse(checkpointID: id, bytesReceived: receiver.totalBytes)
    }
}

extension JobEvent {
    /// Finished, failed or cancelled: the last event of a job.
    var isTerminal: Bool {
        switch kind {
        case .finished, .failed, .cancelled: true
        default: false
        }
    }
}
