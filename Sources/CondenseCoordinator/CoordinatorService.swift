import CondenseEmbedding
import CondenseRPC
import CondenseWire
import Logging

/// The coordinator's RPC surface: `WorkerService` for embedding and training workers,
/// `EmbeddingService` (Embed, EmbedStream, Health) for clients, answered by fanning batches out
/// to the workers, and `FineTuneService` when a state directory holds the job store. Run
/// `monitorHeartbeats()` alongside the server so silent workers are dropped.
///
/// Tokenize and GetModelInfo need a model and are not offered here (UNIMPLEMENTED); options
/// that need the model to check (dimensions, max_tokens) are checked by the worker, which fails
/// the items with ITEM_ERROR_CODE_INTERNAL naming the option.
public struct CoordinatorService: RPCService {
    let scheduler: EmbeddingScheduler
    private let settings: CoordinatorSettings
    let gate: ShutdownGate
    private let logger: Logger
    /// Fine-tuning jobs; nil without a state directory (training workers are then refused).
    public let fineTune: FineTuneCoordinator?

    public init(
        settings: CoordinatorSettings = .init(), fineTune: FineTuneCoordinator? = nil,
        logger: Logger = Logger(label: "condense.coordinator")
    ) {
        self.settings = settings
        self.logger = logger
        self.fineTune = fineTune
        scheduler = EmbeddingScheduler(settings: settings, logger: logger)
        gate = ShutdownGate(retryAfterMs: settings.retryAfterMs)
    }

    /// Graceful shutdown, before the RPC server stops: new calls and worker sessions get UNAVAILABLE;
    /// training workers are drained at once (each finishes its step, uploads a checkpoint of it and
    /// hands its job back); Embed and EmbedStream calls in progress run on until they end; then the
    /// embedding workers are drained. Whatever is still running after `grace` is left to the server's
    /// stop; jobs still held by a worker then are re-queued in the store, to resume on restart.
    public func shutdown(grace: Duration) async {
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        func remainingMs() -> UInt32 {
            let left = max(.zero, deadline - clock.now)
            return UInt32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
        }
        /// Polls `done` until it holds or the grace period is over; false when time ran out.
        func wait(until done: () async -> Bool) async -> Bool {
            while clock.now < deadline {
                if await done() { return true }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return await done()
        }
        gate.close()
        logger.notice("shutting down", metadata: ["grace": "\(grace)"])
        await fineTune?.beginShutdown(reason: "the coordinator is shutting down", deadlineMs: remainingMs())
        let scheduler = self.scheduler
        if await !wait(until: { await scheduler.openCallCount == 0 }) {
            let calls = await scheduler.openCallCount
            logger.warning("calls still running at the end of the grace period", metadata: ["calls": "\(calls)"])
        }
        await scheduler.drainWorkers(reason: "the coordinator is shutting down", deadlineMs: remainingMs())
        let fineTune = self.fineTune
        let drained = await wait(until: {
            // Until a handed-back job is re-queued in the store, not just until its session is gone.
            let training = await fineTune?.hasTrainingSessions ?? false
            let embedding = await scheduler.sessionCount
            return !training && embedding == 0
        })
        if !drained { logger.warning("workers still connected at the end of the grace period") }
        await fineTune?.finishShutdown(reason: "the coordinator shut down")
    }

    /// Embedding workers registered now.
    public var embeddingWorkerCount: Int {
        get async { await scheduler.registeredWorkerCount }
    }

    /// Drops workers silent for `heartbeatTimeout`, checking four times per timeout, until cancelled.
    public func monitorHeartbeats() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: settings.heartbeatTimeout / 4) } catch { return }
            await scheduler.evictSilentWorkers()
            await fineTune?.evictSilentWorkers()
        }
    }

    public func register(in registry: inout RPCMethodRegistry) {
        let scheduler = self.scheduler
        let settings = self.settings
        let fineTune = self.fineTune
        let gate = self.gate
        fineTune?.register(in: &registry)
        registry.bidirectional(Methods.WorkerService.connect.path) {
            (requests: RPCMessageStream<WorkerMessage>, responses: RPCMessageWriter<CoordinatorMessage>, context) in
            // A worker refused here backs off and dials again: the restarted coordinator takes it.
            try gate.admit()
            // Messages for the worker go through `relay`; when a scheduler ends the session it finishes
            // the relay, the writer returns, and the reader (blocked on the worker) is cancelled.
            let (relay, relayInput) = AsyncStream<CoordinatorMessage>.makeStream()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await message in relay { try await responses.write(message) }
                }
                group.addTask {
                    defer { relayInput.finish() }
                    var messages = requests.makeAsyncIterator()
                    guard let first = try await messages.next() else { return }
                    guard case .registration(let registration) = first.kind else {
                        throw RPCError(code: .failedPrecondition, message: "the first WorkerMessage must be Register")
                    }
                    switch registration.kind {
                    case .train:
                        guard let fineTune else {
                            throw RPCError(code: .unimplemented, message: "this coordinator has no state directory, so it runs no fine-tuning jobs")
                        }
                        try await fineTune.serveTrainingSession(registration, messages: &messages, relay: relayInput)
                    case .embed:
                        try await Self.serveEmbeddingSession(
                            registration, messages: &messages, relay: relayInput, scheduler: scheduler, context: context)
                    case .unspecified:
                        throw RPCError(code: .invalidArgument, message: "Register.kind must be EMBED or TRAIN")
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }
        registry.unary(Methods.EmbeddingService.health.path) { (request: HealthRequest, _) -> HealthResponse in
            guard request.service.isEmpty || request.service == Methods.EmbeddingService.serviceName else {
                return HealthResponse(status: .unknown, detail: "unknown service \(request.service)")
            }
            guard !gate.isClosed else { return HealthResponse(status: .notServing, detail: "shutting down") }
            let workers = await scheduler.registeredWorkerCount
            return workers == 0
                ? HealthResponse(status: .notServing, detail: "no embedding workers")
                : HealthResponse(status: .serving, detail: "\(workers) embedding worker\(workers == 1 ? "" : "s"): \(await scheduler.anyModel)")
        }
        registry.unary(Methods.EmbeddingService.embed.path) { (request: EmbedRequest, _) -> EmbedResponse in
            try gate.admit()
            guard !request.texts.isEmpty else { throw RPCError(code: .invalidArgument, message: "Embed without texts") }
            guard request.texts.count <= settings.maxTextsPerRequest else {
                throw RPCError(
                    code: .invalidArgument,
                    message: "\(request.texts.count) texts in one Embed call; the limit is \(settings.maxTextsPerRequest) (use EmbedStream for bulk work)")
            }
            try await Self.checkOptions(request.options, fineTune: fineTune)
            try await settings.modelOptionCheck?(request.options)
            let (job, deliveries) = try await scheduler.openJob()
            do {
                try await scheduler.submit(
                    job, Self.batches(request.texts, malformed: request.malformedTexts, firstIndex: 0, options: request.options,
                                      batchTexts: settings.batchTexts),
                    waitForRoom: false)
                await scheduler.finishInput(job)
                var results = [EmbeddingResult?](repeating: nil, count: request.texts.count)
                for try await delivery in deliveries {
                    for result in delivery.results where result.index < UInt64(results.count) {
                        results[Int(result.index)] = result
                    }
                    await scheduler.acknowledge(job, count: delivery.results.count)
                }
                try Task.checkCancellation()
                let summary = await scheduler.closeJob(job)
                let complete = results.compactMap { $0 }
                guard complete.count == results.count else {
                    throw RPCError(code: .internal, message: "\(results.count - complete.count) results missing")
                }
                return EmbedResponse(results: complete, usage: summary?.usage, model: await Self.model(summary, scheduler))
            } catch {
                await scheduler.closeJob(job)
                throw error
            }
        }
        registry.bidirectional(Methods.EmbeddingService.embedStream.path) {
            (requests: RPCMessageStream<EmbedStreamRequest>, responses: RPCMessageWriter<EmbedStreamResponse>, _) in
            try gate.admit()
            let (job, deliveries) = try await scheduler.openJob()
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        do {
                            try await Self.readStreamInput(
                                requests, job: job, scheduler: scheduler, settings: settings, fineTune: fineTune)
                        } catch {
                            // The writer below is waiting on deliveries: end them with the reason.
                            let reason = error as? RPCError ?? RPCError(code: .internal, message: "\(error)")
                            await scheduler.fail(job, reason)
                        }
                    }
                    for try await delivery in deliveries {
                        try await responses.write(EmbedStreamResponse(kind: .batch(EmbeddingBatch(results: delivery.results))))
                        await scheduler.acknowledge(job, count: delivery.results.count)
                    }
                    try await group.waitForAll()
                }
                try Task.checkCancellation()
                let summary = await scheduler.closeJob(job)
                try await responses.write(EmbedStreamResponse(kind: .summary(EmbedStreamSummary(
                    usage: summary?.usage ?? Usage(), model: await Self.model(summary, scheduler)))))
            } catch {
                await scheduler.closeJob(job)
                throw error
            }
        }
    }

    // MARK: Helpers

    /// Reads EmbedStream input and queues it in batches of `batchTexts`, cut in input order.
    private static func readStreamInput(
        _ requests: RPCMessageStream<EmbedStreamRequest>, job: UInt64, scheduler: EmbeddingScheduler,
        settings: CoordinatorSettings, fineTune: FineTuneCoordinator?
    ) async throws {
        var options: EmbedOptions?
        var started = false
        var pending = EmbeddingScheduler.BatchInput(firstIndex: 0, texts: [], malformed: [], options: nil)
        for try await chunk in requests {
            if !started {
                try await checkOptions(chunk.options, fineTune: fineTune)
                try await settings.modelOptionCheck?(chunk.options)
                options = chunk.options
                pending = EmbeddingScheduler.BatchInput(firstIndex: chunk.firstIndex, texts: [], malformed: [], options: options)
                started = true
            }
            // Indexes continue where the previous chunk ended, as in the single-process server.
            let expected = pending.firstIndex + UInt64(pending.texts.count)
            guard chunk.firstIndex == expected || chunk.texts.isEmpty else {
                throw RPCError(code: .invalidArgument, message: "chunk starts at index \(chunk.firstIndex), expected \(expected)")
            }
            pending.malformed += chunk.malformedTexts.map {
                MalformedText(index: pending.texts.count + $0.index, bytes: $0.bytes)
            }
            pending.texts += chunk.texts
            while pending.texts.count >= settings.batchTexts {
                let (batch, rest) = split(pending, at: settings.batchTexts)
                try await scheduler.submit(job, [batch], waitForRoom: true)
                pending = rest
            }
        }
        if !pending.texts.isEmpty { try await scheduler.submit(job, [pending], waitForRoom: true) }
        await scheduler.finishInput(job)
    }

    /// The first `count` texts as a batch, and the rest renumbered after them.
    private static func split(
        _ input: EmbeddingScheduler.BatchInput, at count: Int
    ) -> (EmbeddingScheduler.BatchInput, EmbeddingScheduler.BatchInput) {
        let head = EmbeddingScheduler.BatchInput(
            firstIndex: input.firstIndex, texts: Array(input.texts.prefix(count)),
            malformed: input.malformed.filter { $0.index < count }, options: input.options)
        let tail = EmbeddingScheduler.BatchInput(
            firstIndex: input.firstIndex + UInt64(count), texts: Array(input.texts.dropFirst(count)),
            malformed: input.malformed.filter { $0.index >= count }.map { MalformedText(index: $0.index - count, bytes: $0.bytes) },
            options: input.options)
        return (head, tail)
    }

    /// `texts` cut into batches of `batchTexts`.
    private static func batches(
        _ texts: [String], malformed: [MalformedText], firstIndex: UInt64, options: EmbedOptions?, batchTexts: Int
    ) -> [EmbeddingScheduler.BatchInput] {
        var remaining = EmbeddingScheduler.BatchInput(firstIndex: firstIndex, texts: texts, malformed: malformed, options: options)
        var result: [EmbeddingScheduler.BatchInput] = []
        while remaining.texts.count > batchTexts {
            let (batch, rest) = split(remaining, at: batchTexts)
            result.append(batch)
            remaining = rest
        }
        result.append(remaining)
        return result
    }

    /// The option checks that need no model: prompt syntax, and that an adapter is one the fine-tuning
    /// store holds (workers fetch it from there on first use).
    private static func checkOptions(_ options: EmbedOptions?, fineTune: FineTuneCoordinator?) async throws(RPCError) {
        guard let options else { return }
        if !options.adapterID.isEmpty {
            guard let fineTune, try await fineTune.adapterExists(options.adapterID) else {
                throw RPCError(code: .notFound, message: "unknown adapter '\(options.adapterID)'")
            }
        }
        do {
            switch options.prompt {
            case .promptName(let name): _ = try PromptTemplate(nameOrTemplate: name)
            case .promptTemplate(let template): _ = try PromptTemplate(nameOrTemplate: template)
            case nil: break
            }
        } catch {
            throw RPCError(code: .invalidArgument, message: error.description)
        }
    }

    private static func model(_ summary: JobSummary?, _ scheduler: EmbeddingScheduler) async -> String {
        if let model = summary?.model, !model.isEmpty { return model }
        return await scheduler.anyModel
    }

    /// An embedding worker's Connect session after its Register: assignments go out through `relay`
    /// as the scheduler hands them over; heartbeats and results come in.
    private static func serveEmbeddingSession<Messages: AsyncIteratorProtocol>(
        _ registration: Register, messages: inout Messages, relay: AsyncStream<CoordinatorMessage>.Continuation,
        scheduler: EmbeddingScheduler, context: RPCContext
    ) async throws where Messages.Element == WorkerMessage {
        let (session, outbound) = await scheduler.openSession()
        async let forwarding: Void = {
            for await message in outbound { relay.yield(message) }
            relay.finish()
        }()
        do {
            try await scheduler.register(session, registration)
            while let message = try await messages.next() {
                switch message.kind {
                case .registration: throw RPCError(code: .invalidArgument, message: "Register sent twice in one session")
                case .heartbeat(let heartbeat): await scheduler.heartbeat(session, heartbeat)
                case .embedResult(let result): await scheduler.complete(session, result)
                case .trainEvent: throw RPCError(code: .invalidArgument, message: "an embedding worker sent a training event")
                case nil: throw RPCError(code: .invalidArgument, message: "WorkerMessage without a kind")
                }
            }
        } catch {
            await scheduler.endSession(session, reason: "\(error)")
            await forwarding
            throw error
        }
        await scheduler.endSession(session, reason: "session ended by the worker")
        await forwarding
        context.logger.debug("worker session closed", metadata: ["peer": "\(context.peer)"])
    }
}
