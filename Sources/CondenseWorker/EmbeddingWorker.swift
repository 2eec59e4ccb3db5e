import CondenseEmbedding
import CondenseRPC
import CondenseServer
import CondenseWire
import Foundation
import Logging

/// An embedding worker's settings.
public struct EmbeddingWorkerConfiguration: Sendable {
    public var connection: CoordinatorConnection
    /// Defaults for options a request leaves unset (must match across workers of one coordinator).
    public var settings: EmbeddingServiceSettings

    public init(connection: CoordinatorConnection, settings: EmbeddingServiceSettings = .init()) {
        self.connection = connection
        self.settings = settings
    }
}

/// An embedding worker: dials the coordinator, registers, sends heartbeats, and runs EmbedBatch
/// assignments one at a time on the compute queue with the same code path as the single-process
/// server (`EmbeddingServiceProvider.embed`), so a batch yields the same bytes on any worker.
/// Reconnects with exponential backoff when the session is lost.
///
/// A shutdown (`WorkerShutdown`) or the coordinator's Drain stops the intake: batches already
/// received are embedded and their results sent, later ones are left to the coordinator (it re-queues
/// what a session leaves unanswered), then the session ends. After a shutdown the worker stops; after
/// a Drain it dials again.
///
/// Batches that name an adapter run on the base model with that adapter merged (see `AdapterServing`),
/// with the adapter's recipe filling in the options the request leaves unset.
public struct EmbeddingWorker: Sendable {
    private let configuration: EmbeddingWorkerConfiguration
    private let embedder: Embedder
    /// Reported in Register and, through the coordinator, to clients (e.g. the model file name).
    private let modelID: String
    /// Nil: batches that name an adapter fail their items.
    private let adapters: AdapterCache?
    /// Session state and work done, for the operations port; nil when it is off.
    private let activity: WorkerActivity?
    private let logger: Logger

    public init(
        configuration: EmbeddingWorkerConfiguration, embedder: Embedder, modelID: String, adapters: AdapterServing? = nil,
        activity: WorkerActivity? = nil, logger: Logger = Logger(label: "condense.worker")
    ) {
        self.configuration = configuration
        self.embedder = embedder
        self.modelID = modelID
        self.adapters = adapters.map { AdapterCache(serving: $0, logger: logger) }
        self.activity = activity
        self.logger = logger
    }

    /// Serves until the task is cancelled (batches in hand are re-run elsewhere), `shutdown` begins
    /// (batches in hand are delivered first), or the coordinator rejects the worker.
    public func run(until shutdown: WorkerShutdown? = nil) async throws(WorkerError) {
        let worker = self
        try await runSessions(configuration.connection, until: shutdown, logger: logger) { client in
            await worker.runSession(client, shutdown: shutdown)
        }
    }

    private func runSession(_ client: RPCClient, shutdown: WorkerShutdown?) async -> SessionOutcome {
        let (outbound, outboundContinuation) = AsyncStream<WorkerMessage>.makeStream()
        let (assignments, assignmentContinuation) = AsyncStream<Assignment>.makeStream()
        let state = SessionState()
        let registration = Register(
            workerID: configuration.connection.workerID, kind: .embed, models: [modelID], adaptersCached: await adapters?.loadedIDs ?? [],
            threads: UInt32(clamping: configuration.connection.threads),
            memoryBytes: ProcessInfo.processInfo.physicalMemory)
        let heartbeatInterval = configuration.connection.heartbeatInterval
        let activity = self.activity
        let logger = self.logger
        defer { activity?.sessionClosed() }
        // Takes no more assignments; the runner ends the session once those received are answered.
        @Sendable func stopIntake(_ reason: String) async {
            logger.notice("finishing the batches in hand and ending the session", metadata: ["reason": "\(reason)"])
            await state.stopIntake()
            assignmentContinuation.finish()
        }
        do {
            let drainReason = try await client.bidirectional(
                Methods.WorkerService.connect.path, requestType: WorkerMessage.self, responseType: CoordinatorMessage.self,
                sendRequests: { writer in
                    try await writer.write(WorkerMessage(kind: .registration(registration)))
                    activity?.sessionOpened()
                    for await message in outbound { try await writer.write(message) }
                },
                handleResponses: { responses -> String? in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            guard let shutdown else { return }
                            await shutdown.wait()
                            if !Task.isCancelled { await stopIntake("worker shutting down") }
                        }
                        group.addTask {
                            while true {
                                try await Task.sleep(for: heartbeatInterval)
                                let (load, depth) = await state.takeLoad()
                                outboundContinuation.yield(WorkerMessage(kind: .heartbeat(Heartbeat(
                                    load: load, queueDepth: UInt32(depth)))))
                            }
                        }
                        group.addTask {
                            for await assignment in assignments {
                                if let result = await run(assignment, state: state, client: client) {
                                    activity?.batchDone(texts: result.results.count, tokens: result.usage?.totalTokens ?? 0)
                                    outboundContinuation.yield(WorkerMessage(kind: .embedResult(result)))
                                }
                                await state.finished(assignment.assignmentID)
                            }
                            // Intake stopped: every assignment received is answered; ending the input ends the session.
                            outboundContinuation.finish()
                        }
                        var drainReason: String?
                        for try await message in responses {
                            switch message.kind {
                            case .assignment(let assignment):
                                // Left unanswered once the intake stopped: the coordinator re-queues it.
                                if await state.received(assignment.assignmentID) { assignmentContinuation.yield(assignment) }
                            case .cancel(let cancel):
                                await state.cancel(cancel.assignmentID)
                            case .drain(let drain):
                                let reason = "drained by the coordinator" + (drain.reason.isEmpty ? "" : ": \(drain.reason)")
                                drainReason = reason
                                await stopIntake(reason)
                            case nil:
                                break
                            }
                        }
                        group.cancelAll()
                        return drainReason
                    }
                })
            outboundContinuation.finish()
            assignmentContinuation.finish()
            if shutdown?.isRequested == true { return .stopped }
            // Drained: the coordinator is going away; dial again later.
            return .lost(drainReason ?? "the coordinator ended the session")
        } catch let error as RPCError {
            outboundContinuation.finish()
            assignmentContinuation.finish()
            switch error.code {
            case .invalidArgument, .unimplemented, .unauthenticated, .permissionDenied: return .rejected(error)
            default: return shutdown?.isRequested == true ? .stopped : .lost("\(error)")
            }
        } catch {
            outboundContinuation.finish()
            assignmentContinuation.finish()
            return shutdown?.isRequested == true ? .stopped : .lost("\(error)")
        }
    }

    /// Embeds one assignment; nil when it was cancelled before it ran or is not embedding work.
    private func run(_ assignment: Assignment, state: SessionState, client: RPCClient) async -> EmbedBatchResult? {
        guard await !state.isCancelled(assignment.assignmentID) else { return nil }
        guard case .embed(let batch) = assignment.work else {
            logger.error("assignment without embedding work", metadata: ["assignment": "\(assignment.assignmentID)"])
            return nil
        }
        var usage = Usage()
        let results: [EmbeddingResult]
        let started = ContinuousClock.now
        var wire = batch.options ?? EmbedOptions()
        var embedder = self.embedder
        var settings = configuration.settings
        if !wire.adapterID.isEmpty {
            do {
                let adapter = try await adapter(wire.adapterID, client: client)
                embedder = adapter.embedder
                if let recipe = adapter.recipe { (wire, settings) = Self.following(recipe, wire, settings) }
                // Resolved here: the option conversion below knows only base models.
                wire.adapterID = ""
            } catch {
                if Task.isCancelled { return nil }
                logger.error("adapter unavailable", metadata: ["adapter": "\(wire.adapterID)", "error": "\(error)"])
                return Self.failed(batch, assignment, message: "worker \(configuration.connection.workerID): \(error)")
            }
        }
        do {
            let options = try EmbeddingServiceProvider.embeddingOptions(wire, settings: settings, embedder: embedder)
            results = try await EmbeddingServiceProvider.embed(
                batch.texts, malformed: batch.malformedTexts, firstIndex: 0, options: options,
                precision: EmbeddingServiceProvider.precision(wire.precision), embedder: embedder,
                usage: &usage)
        } catch let error as RPCError {
            // Options this model cannot honour (e.g. too many dimensions): every item fails, saying why.
            return Self.failed(batch, assignment, message: "options rejected by worker \(configuration.connection.workerID): \(error.message)")
        } catch {
            // Cancelled: the session is ending and nobody waits for this result.
            return nil
        }
        await state.addBusy(ContinuousClock.now - started)
        return EmbedBatchResult(assignmentID: assignment.assignmentID, results: results, usage: usage)
    }

    /// The adapter from the cache, fetched over this session's connection on first use.
    private func adapter(_ id: String, client: RPCClient) async throws -> LoadedAdapter {
        guard let adapters else { throw AdapterUnavailable(description: "this worker serves no adapters (adapter '\(id)')") }
        return try await adapters.adapter(id) { id, directory in
            var receiver = try FileTransfer.Receiver(directory: directory)
            try await client.serverStreaming(
                Methods.WorkerService.fetchAdapter.path, request: FetchAdapterRequest(artifact: .adapterID(id)),
                responseType: FileChunk.self
            ) { chunks in
                for try await chunk in chunks { try receiver.receive(chunk) }
                try receiver.finish()
            }
        }
    }

    /// A request's options on an adapter: what the request leaves unset (prompt, pooling, normalize,
    /// max tokens) comes from the adapter's recipe, so `adapter_id` alone embeds as the adapter was trained.
    static func following(
        _ recipe: EmbeddingRecipe, _ wire: EmbedOptions, _ settings: EmbeddingServiceSettings
    ) -> (EmbedOptions, EmbeddingServiceSettings) {
        var wire = wire
        var settings = settings
        settings.defaultPrompt = recipe.prompt
        settings.defaultPooling = recipe.pooling
        if wire.normalize == nil { wire.normalize = recipe.normalize }
        if wire.maxTokens == 0 { wire.maxTokens = UInt32(clamping: recipe.maxTokens) }
        // A plain bool on the wire: an unset false cannot be told from a sent one, so the recipe's true wins.
        wire.excludePrompt = wire.excludePrompt || recipe.excludePrompt
        return (wire, settings)
    }

    /// Every item of the batch failed with `message`.
    private static func failed(_ batch: EmbedBatch, _ assignment: Assignment, message: String) -> EmbedBatchResult {
        let itemError = ItemError(code: .internal, message: message)
        return EmbedBatchResult(
            assignmentID: assignment.assignmentID,
            results: batch.texts.indices.map { EmbeddingResult(index: UInt64($0), error: itemError) },
            usage: Usage(failedItems: UInt64(batch.texts.count)))
    }
}

/// Assignments of one session that are received and not finished, those cancelled, and the time
/// spent computing since the last heartbeat.
private actor SessionState {
    private var pending: Set<String> = []
    private var cancelled: Set<String> = []
    private var intakeOpen = true
    private var busy: Duration = .zero
    private var since = ContinuousClock.now

    /// Fraction of the time since the last call spent embedding (0 to 1), and the queue depth.
    func takeLoad() -> (load: Float, queueDepth: Int) {
        let now = ContinuousClock.now
        let elapsed = now - since
        let load = elapsed > .zero ? Float(min(1, busy / elapsed)) : 0
        busy = .zero
        since = now
        return (load, pending.count)
    }

    func addBusy(_ duration: Duration) { busy += duration }

    /// Records an assignment; false once the intake stopped (it is not run).
    func received(_ id: String) -> Bool {
        guard intakeOpen else { return false }
        pending.insert(id)
        return true
    }

    func stopIntake() { intakeOpen = false }

    func cancel(_ id: String) {
        if pending.contains(id) { cancelled.insert(id) }
    }

    func isCancelled(_ id: String) -> Bool { cancelled.contains(id) }

    func finished(_ id: String) {
        pending.remove(id)
        cancelled.remove(id)
    }
}
