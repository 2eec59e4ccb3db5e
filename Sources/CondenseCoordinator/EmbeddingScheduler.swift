import CondenseRPC
import CondenseWire
import Logging

/// Results of one finished batch, indexes already in the call's numbering.
struct BatchDelivery: Sendable {
    var results: [EmbeddingResult]
}

/// What a call reports when it ends.
struct JobSummary: Sendable {
    var usage: Usage
    var model: String
}

/// Worker registry, batch queue and batch tracking of the coordinator.
///
/// Every accepted batch stays here until its first result reaches its call: a worker that ends
/// its session or goes silent gets its unfinished batches put back at the front of the queue, and
/// a result for a batch that was already delivered (or whose call has ended) is dropped, so every
/// text reaches the client exactly once.
actor EmbeddingScheduler {
    private struct Worker {
        /// Set by the session's Register message; unregistered sessions get no work.
        var registration: Register?
        let outbound: AsyncStream<CoordinatorMessage>.Continuation
        /// Batch ids assigned and not answered, oldest first.
        var inFlight: [UInt64] = []
        var reportedLoad: Float = 0
        var lastSeen: ContinuousClock.Instant
        /// Sent Drain: it answers what it holds and gets no more.
        var draining = false
    }

    private struct Batch {
        let job: UInt64
        let firstIndex: UInt64
        let texts: [String]
        let malformed: [MalformedText]
        let options: EmbedOptions?
        /// Session currently running it; nil while queued.
        var worker: UInt64?
        var attempts = 0
    }

    private struct Job {
        let sink: AsyncThrowingStream<BatchDelivery, any Error>.Continuation
        /// Accepted and not yet acknowledged as sent to the client.
        var outstandingTexts = 0
        /// Accepted and not yet delivered.
        var batches: Set<UInt64> = []
        var inputFinished = false
        var usage = Usage()
        var model = ""
        /// Submitters waiting for room in the window or the queue.
        var waiters: [CheckedContinuation<Void, any Error>] = []
    }

    /// Input of one batch, texts numbered from `firstIndex` in the call.
    struct BatchInput: Sendable {
        var firstIndex: UInt64
        var texts: [String]
        var malformed: [MalformedText]
        var options: EmbedOptions?
    }

    private let settings: CoordinatorSettings
    private let logger: Logger
    private let clock = ContinuousClock()
    private var workers: [UInt64: Worker] = [:]
    private var batches: [UInt64: Batch] = [:]
    private var jobs: [UInt64: Job] = [:]
    /// Batch ids waiting for a worker, next first.
    private var queue: [UInt64] = []
    /// Texts accepted and not yet acknowledged, over all calls.
    private var queuedTexts = 0
    private var nextID: UInt64 = 1
    /// Delivered to their calls since start, for the operations port.
    private var embeddedTexts: UInt64 = 0
    private var embeddedTokens: UInt64 = 0

    init(settings: CoordinatorSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    private func makeID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    // MARK: Workers

    /// A new Connect call; messages for the worker come out of the returned stream, which ends
    /// when the coordinator drops the session.
    func openSession() -> (session: UInt64, outbound: AsyncStream<CoordinatorMessage>) {
        let session = makeID()
        let (stream, continuation) = AsyncStream<CoordinatorMessage>.makeStream()
        workers[session] = Worker(outbound: continuation, lastSeen: clock.now)
        return (session, stream)
    }

    func register(_ session: UInt64, _ registration: Register) throws(RPCError) {
        guard workers[session]?.registration == nil else {
            throw RPCError(code: .invalidArgument, message: "Register sent twice in one session")
        }
        guard registration.kind == .embed else {
            throw RPCError(
                code: .unimplemented,
                message: "worker kind \(registration.kind) is not supported; this coordinator runs embedding workers only")
        }
        guard !registration.workerID.isEmpty else {
            throw RPCError(code: .invalidArgument, message: "Register.worker_id is empty")
        }
        // A worker that reconnects before its old session timed out replaces that session.
        for (other, worker) in workers where worker.registration?.workerID == registration.workerID {
            endSession(other, reason: "replaced by a new session of the same worker")
        }
        workers[session]?.registration = registration
        workers[session]?.lastSeen = clock.now
        logger.info(
            "worker registered",
            metadata: [
                "worker": "\(registration.workerID)", "models": "\(registration.models)",
                "threads": "\(registration.threads)", "memory_bytes": "\(registration.memoryBytes)",
            ])
        dispatch()
    }

    func heartbeat(_ session: UInt64, _ heartbeat: Heartbeat) {
        workers[session]?.lastSeen = clock.now
        workers[session]?.reportedLoad = heartbeat.load
    }

    /// Drops a session: its unfinished batches go back to the front of the queue. No effect for
    /// a session already dropped.
    func endSession(_ session: UInt64, reason: String) {
        guard let worker = workers.removeValue(forKey: session) else { return }
        worker.outbound.finish()
        let workerID = worker.registration?.workerID ?? "unregistered"
        // Reverse order so that the oldest unfinished batch ends up first in the queue.
        var requeued = 0
        for batchID in worker.inFlight.reversed() {
            guard var batch = batches[batchID], batch.worker == session else { continue }
            batch.worker = nil
            guard batch.attempts < settings.maxAttempts else {
                fail(
                    batch.job,
                    RPCError(
                        code: .unavailable,
                        message: "the batch of texts \(batch.firstIndex)..<\(batch.firstIndex + UInt64(batch.texts.count)) was lost by \(batch.attempts) workers",
                        retryAfterMs: settings.retryAfterMs))
                continue
            }
            batches[batchID] = batch
            queue.insert(batchID, at: 0)
            requeued += 1
        }
        logger.notice("worker left", metadata: ["worker": "\(workerID)", "reason": "\(reason)", "requeued_batches": "\(requeued)"])
        // Nobody is left to run the queued batches: their calls fail now, with a retry hint,
        // rather than wait without bound for a worker to come back.
        if registeredWorkerCount == 0, !queue.isEmpty {
            let stranded = Set(queue.compactMap { batches[$0]?.job })
            for job in stranded {
                fail(job, RPCError(code: .unavailable, message: "no embedding workers", retryAfterMs: settings.retryAfterMs))
            }
        }
        dispatch()
    }

    /// Drops sessions that sent nothing for `heartbeatTimeout`.
    func evictSilentWorkers() {
        let now = clock.now
        let silent = workers.filter { now - $0.value.lastSeen > settings.heartbeatTimeout }.keys
        for session in silent {
            endSession(session, reason: "no message for \(settings.heartbeatTimeout)")
        }
    }

    var registeredWorkerCount: Int {
        workers.values.reduce(0) { $0 + ($1.registration == nil ? 0 : 1) }
    }

    /// Sessions open now, registered or not.
    var sessionCount: Int { workers.count }

    /// Calls (Embed, EmbedStream) open now.
    var openCallCount: Int { jobs.count }

    /// Sends Drain to every session: each answers the batches it holds, takes no more, and ends its
    /// session (what it leaves unanswered is re-queued as usual).
    func drainWorkers(reason: String, deadlineMs: UInt32) {
        for session in workers.keys {
            workers[session]?.draining = true
            workers[session]?.outbound.yield(CoordinatorMessage(kind: .drain(Drain(reason: reason, deadlineMs: deadlineMs))))
        }
    }

    // MARK: Results

    func complete(_ session: UInt64, _ result: EmbedBatchResult) {
        workers[session]?.lastSeen = clock.now
        guard let batchID = Self.batchID(of: result.assignmentID) else {
            endSession(session, reason: "result for unknown assignment '\(result.assignmentID)'")
            return
        }
        guard let batch = batches[batchID] else {
            // Delivered already (by a worker it was reassigned to), or its call has ended.
            workers[session]?.inFlight.removeAll { $0 == batchID }
            logger.debug("dropped a result nobody waits for", metadata: ["assignment": "\(result.assignmentID)"])
            dispatch()
            return
        }
        let wellFormed = result.results.count == batch.texts.count
            && result.results.indices.allSatisfy { result.results[$0].index == UInt64($0) }
        guard wellFormed else {
            // Still in the session's in-flight list, so it is re-queued with the rest.
            endSession(session, reason: "malformed result for assignment '\(result.assignmentID)'")
            return
        }
        workers[session]?.inFlight.removeAll { $0 == batchID }
        if let other = batch.worker, other != session {
            workers[other]?.inFlight.removeAll { $0 == batchID }
            workers[other]?.outbound.yield(CoordinatorMessage(kind: .cancel(CancelAssignment(
                assignmentID: Self.assignmentID(batchID, attempt: batch.attempts), reason: "answered by another worker"))))
        }
        batches[batchID] = nil
        embeddedTexts += UInt64(result.results.count)
        embeddedTokens += result.usage?.totalTokens ?? 0
        var results = result.results
        for position in results.indices { results[position].index += batch.firstIndex }
        if var job = jobs[batch.job] {
            job.batches.remove(batchID)
            if let usage = result.usage {
                job.usage.totalTokens += usage.totalTokens
                job.usage.promptTokens += usage.promptTokens
                job.usage.succeededItems += usage.succeededItems
                job.usage.failedItems += usage.failedItems
            }
            if let model = workers[session]?.registration?.models.first {
                // As Protos/services.md says: `+<adapter_id>` when an adapter was applied.
                let adapter = batch.options?.adapterID ?? ""
                job.model = adapter.isEmpty ? model : "\(model)+\(adapter)"
            }
            job.sink.yield(BatchDelivery(results: results))
            if job.inputFinished, job.batches.isEmpty { job.sink.finish() }
            jobs[batch.job] = job
        }
        dispatch()
    }

    // MARK: Calls

    /// Starts a call. UNAVAILABLE when no embedding worker is registered.
    func openJob() throws(RPCError) -> (job: UInt64, deliveries: AsyncThrowingStream<BatchDelivery, any Error>) {
        guard registeredWorkerCount > 0 else {
            throw RPCError(code: .unavailable, message: "no embedding workers", retryAfterMs: settings.retryAfterMs)
        }
        let job = makeID()
        let (stream, continuation) = AsyncThrowingStream<BatchDelivery, any Error>.makeStream()
        jobs[job] = Job(sink: continuation)
        return (job, stream)
    }

    /// Queues `inputs` for `job` as one unit. Without room: RESOURCE_EXHAUSTED, unless
    /// `waitForRoom` and the call has texts in flight (their delivery makes room), then it waits.
    func submit(_ job: UInt64, _ inputs: [BatchInput], waitForRoom: Bool) async throws {
        let count = inputs.reduce(0) { $0 + $1.texts.count }
        while true {
            guard let state = jobs[job] else { throw RPCError(code: .cancelled, message: "call ended") }
            let fitsQueue = queuedTexts + count <= settings.maxQueuedTexts
            let fitsWindow = !waitForRoom || state.outstandingTexts + count <= settings.streamWindowTexts
            if fitsQueue, fitsWindow || state.outstandingTexts == 0 { break }
            guard waitForRoom, state.outstandingTexts > 0 else {
                throw RPCError(
                    code: .resourceExhausted,
                    message: "\(queuedTexts) texts queued; \(count) more would exceed the limit of \(settings.maxQueuedTexts)",
                    retryAfterMs: settings.retryAfterMs)
            }
            try await waitForAcknowledgement(job)
        }
        guard registeredWorkerCount > 0 else {
            throw RPCError(code: .unavailable, message: "no embedding workers", retryAfterMs: settings.retryAfterMs)
        }
        for input in inputs where !input.texts.isEmpty {
            let batchID = makeID()
            batches[batchID] = Batch(
                job: job, firstIndex: input.firstIndex, texts: input.texts, malformed: input.malformed,
                options: input.options)
            jobs[job]?.batches.insert(batchID)
            queue.append(batchID)
        }
        jobs[job]?.outstandingTexts += count
        queuedTexts += count
        dispatch()
    }

    private func waitForAcknowledgement(_ job: UInt64) async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                guard !Task.isCancelled, jobs[job] != nil else {
                    continuation.resume(throwing: RPCError(code: .cancelled, message: "call ended"))
                    return
                }
                jobs[job]?.waiters.append(continuation)
            }
        } onCancel: {
            Task { await self.wakeWaiters(job, throwing: RPCError(code: .cancelled, message: "call cancelled")) }
        }
    }

    private func wakeWaiters(_ job: UInt64, throwing error: RPCError? = nil) {
        guard let waiters = jobs[job]?.waiters else { return }
        jobs[job]?.waiters = []
        for waiter in waiters {
            if let error { waiter.resume(throwing: error) } else { waiter.resume() }
        }
    }

    /// No more input for `job`: its deliveries end after the last accepted batch.
    func finishInput(_ job: UInt64) {
        guard var state = jobs[job] else { return }
        state.inputFinished = true
        if state.batches.isEmpty { state.sink.finish() }
        jobs[job] = state
    }

    /// `count` delivered texts have been sent to the client: room for more.
    func acknowledge(_ job: UInt64, count: Int) {
        guard jobs[job] != nil else { return }
        jobs[job]?.outstandingTexts -= count
        queuedTexts -= count
        wakeWaiters(job)
    }

    /// Ends a call: forgets its batches (cancelling those on workers) and returns its totals.
    @discardableResult
    func closeJob(_ job: UInt64) -> JobSummary? {
        guard let state = jobs.removeValue(forKey: job) else { return nil }
        state.sink.finish()
        queuedTexts -= state.outstandingTexts
        for waiter in state.waiters { waiter.resume(throwing: RPCError(code: .cancelled, message: "call ended")) }
        if !state.batches.isEmpty {
            queue.removeAll { state.batches.contains($0) }
            for batchID in state.batches {
                guard let batch = batches.removeValue(forKey: batchID), let session = batch.worker else { continue }
                workers[session]?.inFlight.removeAll { $0 == batchID }
                workers[session]?.outbound.yield(CoordinatorMessage(kind: .cancel(CancelAssignment(
                    assignmentID: Self.assignmentID(batchID, attempt: batch.attempts), reason: "call ended"))))
            }
            dispatch()
        }
        return JobSummary(usage: state.usage, model: state.model)
    }

    /// Fails a call with `error` (its reader sees it) and closes it.
    func fail(_ job: UInt64, _ error: RPCError) {
        guard let state = jobs[job] else { return }
        state.sink.finish(throwing: error)
        closeJob(job)
    }

    /// Model id of a registered worker, for calls that finished without results.
    var anyModel: String {
        workers.values.lazy.compactMap { $0.registration?.models.first }.first ?? ""
    }

    // MARK: Statistics

    /// Queue and worker figures at one instant, for the operations port.
    struct Statistics: Sendable {
        var registeredWorkers: Int
        var queuedTexts: Int
        var queuedBatches: Int
        var inFlightBatches: Int
        var embeddedTexts: UInt64
        var embeddedTokens: UInt64
    }

    var statistics: Statistics {
        Statistics(
            registeredWorkers: registeredWorkerCount, queuedTexts: queuedTexts, queuedBatches: queue.count,
            inFlightBatches: workers.values.reduce(0) { $0 + $1.inFlight.count }, embeddedTexts: embeddedTexts,
            embeddedTokens: embeddedTokens)
    }

    // MARK: Scheduling

    /// Hands queued batches to the least busy workers while any has a free slot.
    private func dispatch() {
        while let batchID = queue.first {
            guard let session = leastLoadedWorker() else { return }
            queue.removeFirst()
            guard var batch = batches[batchID], var worker = workers[session] else { continue }
            batch.attempts += 1
            batch.worker = session
            batches[batchID] = batch
            worker.inFlight.append(batchID)
            workers[session] = worker
            let assignment = Assignment(
                assignmentID: Self.assignmentID(batchID, attempt: batch.attempts),
                work: .embed(EmbedBatch(texts: batch.texts, malformedTexts: batch.malformed, options: batch.options)))
            worker.outbound.yield(CoordinatorMessage(kind: .assignment(assignment)))
        }
    }

    /// Fewest assignments in flight, then lowest reported load; nil when all are full.
    private func leastLoadedWorker() -> UInt64? {
        var best: (session: UInt64, inFlight: Int, load: Float)?
        for (session, worker) in workers
        where worker.registration != nil && !worker.draining && worker.inFlight.count < settings.assignmentsPerWorker {
            let candidate = (session, worker.inFlight.count, worker.reportedLoad)
            if let current = best,
               (current.inFlight, current.load, current.session) <= (candidate.1, candidate.2, candidate.0) { continue }
            best = candidate
        }
        return best?.session
    }

    static func assignmentID(_ batchID: UInt64, attempt: Int) -> String { "\(batchID).\(attempt)" }

    static func batchID(of assignmentID: String) -> UInt64? {
        guard let dot = assignmentID.firstIndex(of: ".") else { return nil }
        return UInt64(assignmentID[..<dot])
    }
}
