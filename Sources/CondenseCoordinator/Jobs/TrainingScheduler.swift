import CondenseRPC
import CondenseWire
import Foundation
import Logging

/// Fine-tuning jobs and the training workers that run them.
///
/// The queue lives in memory; the truth lives in the `JobStore`. On start the coordinator re-queues
/// every unfinished job from the store; a worker that ends its session or goes silent gets its job
/// put back at the front of the queue, to resume from the job's newest checkpoint on the next idle
/// worker. One job per worker at a time.
///
/// While the coordinator shuts down nothing is assigned; its workers are drained (each hands its
/// job back at the step it reached) and whatever is still held when the grace period ends is
/// re-queued in the store, so a restarted coordinator resumes every job.
actor TrainingScheduler {
    private struct Worker {
        let registration: Register
        let outbound: AsyncStream<CoordinatorMessage>.Continuation
        var lastSeen: ContinuousClock.Instant
        var assignment: (id: String, job: String)?
    }

    private let store: JobStore
    private let hub: JobEventHub
    private let logger: Logger
    private let heartbeatTimeout: Duration
    private let clock = ContinuousClock()
    private var workers: [UInt64: Worker] = [:]
    /// Job ids waiting for a worker, next first.
    private var queue: [String] = []
    private var nextID: UInt64 = 1
    /// Set once the coordinator shuts down: no more assignments.
    private var shuttingDown = false
    /// Sessions removed whose job is still being re-queued in the store.
    private var detaching = 0

    init(store: JobStore, hub: JobEventHub, heartbeatTimeout: Duration, logger: Logger) {
        self.store = store
        self.hub = hub
        self.heartbeatTimeout = heartbeatTimeout
        self.logger = logger
    }

    var workerCount: Int { workers.count }
    /// Whether any session is open or still re-queueing its job: a shutdown waits for neither.
    var hasSessions: Bool { !workers.isEmpty || detaching > 0 }
    var queuedJobCount: Int { queue.count }

    // MARK: Jobs

    /// Appends an event to the job's durable log and tells its watchers.
    @discardableResult
    func record(_ kind: JobEvent.Kind, job: String) async throws(RPCError) -> FineTuneJob? {
        guard let (event, updated) = try await store.append(kind, to: job) else { return nil }
        await hub.publish(event)
        return updated
    }

    /// Puts a validated job in the queue (QUEUED event, with `reason` when it ran before) and starts
    /// it if a worker is idle.
    func enqueue(_ job: String, front: Bool = false, reason: String = "") async throws(RPCError) {
        guard !queue.contains(job) else { return }
        if front { queue.insert(job, at: 0) } else { queue.append(job) }
        let position = UInt32(queue.firstIndex(of: job) ?? 0)
        try await record(.queued(JobQueued(queuePosition: position, reason: reason)), job: job)
        await dispatch()
    }

    /// Re-queues what the store holds unfinished (after a coordinator restart), oldest first.
    func recover() async throws(RPCError) {
        for job in try await store.unfinishedJobs() {
            logger.info("re-queueing job after restart", metadata: ["job": "\(job.jobID)", "state": "\(job.state)"])
            var reason = ""
            if job.state == .running { reason = "coordinator restarted; " + (try await resumeNote(job.jobID)) }
            try await enqueue(job.jobID, reason: reason)
        }
    }

    /// Where a re-queued job picks up: "resumes after step N" or "starts over".
    private func resumeNote(_ job: String) async throws(RPCError) -> String {
        guard let resume = try await store.resumePoint(job) else { return "starts over (no checkpoint)" }
        return "resumes after step \(resume.step)"
    }

    // MARK: Shutdown

    /// Stops assigning jobs and sends Drain to every training worker: each finishes its current step,
    /// uploads its checkpoint and ends its session, which re-queues the job.
    func beginShutdown(reason: String, deadlineMs: UInt32) {
        shuttingDown = true
        for worker in workers.values {
            worker.outbound.yield(CoordinatorMessage(kind: .drain(Drain(reason: reason, deadlineMs: deadlineMs))))
        }
    }

    /// Ends the sessions still open (their workers did not hand back in time): their jobs are
    /// re-queued in the store from their newest checkpoint.
    func detachAll(reason: String) async {
        for session in Array(workers.keys) { await detach(session, reason: reason) }
    }

    /// Cancels a job in any non-terminal state; a terminal job is returned unchanged.
    func cancel(_ job: String, reason: String) async throws(RPCError) -> FineTuneJob {
        let current = try await store.job(job)
        guard !current.state.isTerminal else { return current }
        queue.removeAll { $0 == job }
        for (session, worker) in workers where worker.assignment?.job == job {
            if let assignment = worker.assignment {
                worker.outbound.yield(CoordinatorMessage(kind: .cancel(CancelAssignment(assignmentID: assignment.id, reason: reason))))
            }
            workers[session]?.assignment = nil
        }
        let updated = try await record(.cancelled(JobCancelled(reason: reason)), job: job)
        await dispatch()
        if let updated { return updated }
        return try await store.job(job)
    }

    /// Hands queued jobs to idle workers. The worker is reserved before any suspension, so a
    /// concurrent dispatch (actor re-entrancy) cannot give it a second job.
    private func dispatch() async {
        while !shuttingDown, !queue.isEmpty, let session = idleWorker() {
            let job = queue.removeFirst()
            let assignment = "train-\(job)-\(nextID)"
            nextID += 1
            workers[session]?.assignment = (assignment, job)
            do {
                let current = try await store.job(job)
                let resume = try await store.resumePoint(job)
                let pairs = try await store.uploadedPairs(job) ?? []
                // Cancelled, or the worker left, while this was suspended.
                guard let worker = workers[session], worker.assignment?.id == assignment, !current.state.isTerminal,
                      let spec = current.spec
                else {
                    if workers[session]?.assignment?.id == assignment { workers[session]?.assignment = nil }
                    if workers[session] == nil, !current.state.isTerminal { queue.insert(job, at: 0) }
                    continue
                }
                worker.outbound.yield(CoordinatorMessage(kind: .assignment(Assignment(
                    assignmentID: assignment,
                    work: .train(TrainJob(jobID: job, spec: spec, resumeCheckpointID: resume?.checkpointID ?? "",
                                          resumeStep: resume?.step ?? 0, pairs: pairs))))))
                logger.info("job assigned", metadata: [
                    "job": "\(job)", "worker": "\(worker.registration.workerID)", "resume_step": "\(resume?.step ?? 0)"])
            } catch {
                if workers[session]?.assignment?.id == assignment { workers[session]?.assignment = nil }
                logger.error("cannot assign job", metadata: ["job": "\(job)", "error": "\(error)"])
                _ = try? await record(.failed(JobFailed(reason: "cannot start: \(error.message)")), job: job)
            }
        }
    }

    private func idleWorker() -> UInt64? {
        workers.filter { $0.value.assignment == nil }.min { $0.key < $1.key }?.key
    }

    // MARK: Worker sessions

    /// A registered training worker's session; messages for it come out of the returned stream.
    func attach(_ registration: Register) async -> (session: UInt64, outbound: AsyncStream<CoordinatorMessage>) {
        // A worker reconnecting before its old session timed out replaces that session.
        for (other, worker) in workers where worker.registration.workerID == registration.workerID {
            await detach(other, reason: "replaced by a new session of the same worker")
        }
        let session = nextID
        nextID += 1
        let (stream, continuation) = AsyncStream<CoordinatorMessage>.makeStream()
        workers[session] = Worker(registration: registration, outbound: continuation, lastSeen: clock.now)
        logger.info("training worker registered", metadata: ["worker": "\(registration.workerID)"])
        await dispatch()
        return (session, stream)
    }

    /// Ends a session; its running job goes back to the front of the queue.
    func detach(_ session: UInt64, reason: String) async {
        guard let worker = workers.removeValue(forKey: session) else { return }
        detaching += 1
        defer { detaching -= 1 }
        worker.outbound.finish()
        logger.info("training worker left", metadata: ["worker": "\(worker.registration.workerID)", "reason": "\(reason)"])
        if let job = worker.assignment?.job {
            do {
                if try await !store.job(job).state.isTerminal {
                    let note = try await resumeNote(job)
                    try await enqueue(job, front: true, reason: "worker \(worker.registration.workerID) left (\(reason)); \(note)")
                }
            } catch {
                logger.error("cannot re-queue job", metadata: ["job": "\(job)", "error": "\(error)"])
            }
        }
        await dispatch()
    }

    func heartbeat(_ session: UInt64) {
        workers[session]?.lastSeen = clock.now
    }

    func evictSilentWorkers() async {
        let now = clock.now
        for (session, worker) in workers where now - worker.lastSeen > heartbeatTimeout {
            await detach(session, reason: "no heartbeat for \(heartbeatTimeout)")
        }
    }

    /// A worker's progress report: numbered into the job's log. Terminal events free the worker.
    func event(from session: UInt64, _ event: JobEvent) async throws(RPCError) {
        guard let worker = workers[session] else { return }
        workers[session]?.lastSeen = clock.now
        guard let assignment = worker.assignment, assignment.job == event.jobID else {
            // Late events of a cancelled or re-assigned job: not this worker's any more.
            logger.debug("event for a job the worker does not hold", metadata: ["job": "\(event.jobID)"])
            return
        }
        guard let kind = event.kind else { throw RPCError(code: .invalidArgument, message: "JobEvent without a kind") }
        switch kind {
        case .queued, .cancelled:
            throw RPCError(code: .invalidArgument, message: "workers do not send queued or cancelled events")
        case .started(var started):
            started.workerID = worker.registration.workerID
            try await record(.started(started), job: assignment.job)
        case .step, .checkpoint:
            try await record(kind, job: assignment.job)
        case .finished, .failed:
            try await record(kind, job: assignment.job)
            workers[session]?.assignment = nil
            await dispatch()
        }
    }

    /// The job a worker holds now (uploads must belong to it).
    func holds(_ job: String) -> Bool {
        workers.values.contains { $0.assignment?.job == job }
    }
}
