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

    /// Serves until the task is cancelled, the coordinator drains this worker, or it rejects it.
    public func run() async throws(WorkerError) {
        try await runCoordinatorSessions(configuration.connection, logger: logger, session: runSession)
    }

    private func runSession(_ client: RPCClient) async -> SessionOutcome {
        let (outbound, outboundContinuation) = AsyncStream<WorkerMessage>.makeStream()
        let (assignments, assignmentContinuation) = AsyncStream<Assignment>.makeStream()
        let state = SessionState()
        let registration = Register(
            workerID: configuration.connection.workerID, kind: .embed, models: [modelID], adaptersCached: await adapters?.loadedIDs ?? [],
            threads: UInt32(clamping: configuration.connection.threads),
            memoryBytes: ProcessInfo.processInfo.physicalMemory)
        let heartbeatInterval = configuration.connection.heartbeatInterval
        let activity = self.activity
        defer { activity?.sessionClosed() }
        do {
            let drained = try await client.bidirectional(
                Methods.WorkerService.connect.path, requestType: WorkerMessage.self, responseType: CoordinatorMessage.self,
                sendRequests: { writer in
                    try await writer.write(WorkerMessage(kind: .registration(registration)))
                    activity?.sessionOpened()
                    for await message in outbound { try await writer.write(message) }
                },
                handleResponses: { responses in
                    try await withThrowingTaskGroup(of: Void.self) { group in
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
                            // Drained: every assignment answered; ending the input ends the session.
                            outboundContinuation.finish()
                        }
                        var drained = false
                        for try await message in responses {
                            switch message.kind {
                            case .assignment(let assignment):
                                await state.received(assignment.assignmentID)
                                assignmentContinuation.yield(assignment)
                            case .cancel(let cancel):
                                await state.cancel(cancel.assignmentID)
                            case .drain(let drain):
                                logger.notice("draining", metadata: ["reason": "\(drain.reason)"])
                                drained = true
                                assignmentContinuation.finish()
                            case nil:
                                break
                            }
                        }
                        group.cancelAll()
                        return drained
                    }
                })
            outboundContinuation.finish()
            assignmentContinuation.finish()
            return drained ? .drained : .lost("the coordinator ended the session")
        } catch let error as RPCError {
            outboundContinuation.finish()
            assignmentContinuation.finish()
            switch error.code {
            case .invalidArgument, .unimplemented, .unauthenticated, .permissionDenied: return .rejected(error)
            default: return .lost("\(error)")
            }
        } catch {
            outboundContinuation.finish()
            assignmentContinuation.finish()
            return .lost("\(error)")
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

    func received(_ id: String) { pending.insert(id) }

    func cancel(_ id: String) {
        if pending.contains(id) { cancelled.insert(id) }
    }

    func isCancelled(_ id: String) -> Bool { cancelled.contains(id) }

    func finished(_ id: String) {
        pending.remove(id)
        cancelled.remove(id)
    }
}
