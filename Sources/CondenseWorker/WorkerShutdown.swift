import CondenseRPC
import Foundation
import Logging

/// Asks a running worker to stop gracefully (SIGTERM): an embedding worker takes no new batches,
/// delivers the ones it holds and ends its session; a training worker finishes its current step,
/// uploads a checkpoint of it and hands the job back to the coordinator, which queues it to resume
/// from that step elsewhere. `run(until:)` then returns. Cancelling the worker's task instead stops
/// it at once (in-flight work is re-run elsewhere from the last periodic checkpoint).
public final class WorkerShutdown: @unchecked Sendable {
    private let lock = NSLock()
    private var requested = false
    private var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    private var nextWaiter: UInt64 = 0

    public init() {}

    public var isRequested: Bool { lock.withLock { requested } }

    /// Starts the shutdown; later calls do nothing.
    public func begin() {
        let woken = lock.withLock {
            requested = true
            defer { waiters = [:] }
            return Array(waiters.values)
        }
        for waiter in woken { waiter.resume() }
    }

    /// Returns once the shutdown has begun, or when the calling task is cancelled.
    func wait() async {
        let id = lock.withLock {
            defer { nextWaiter += 1 }
            return nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = lock.withLock {
                    guard !requested, !Task.isCancelled else { return true }
                    waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = lock.withLock { waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}

/// Whether a worker's dial/session loop is inside a session: a shutdown that begins between sessions
/// (dialling, backing off) stops the loop at once, one inside a session lets the session wind down.
final class SessionPresence: @unchecked Sendable {
    private let lock = NSLock()
    private var inSession = false
    private var shutDown = false

    /// Marks a session as started; false when the shutdown already began (no session then).
    func enter() -> Bool {
        lock.withLock {
            guard !shutDown else { return false }
            inSession = true
            return true
        }
    }

    func leave() { lock.withLock { inSession = false } }

    /// Records the shutdown; true when no session is running, so the loop may be cancelled.
    func shutDownBetweenSessions() -> Bool {
        lock.withLock {
            shutDown = true
            return !inSession
        }
    }
}

/// Runs a worker's dial/session loop (`runCoordinatorSessions`) until it ends on its own or, after
/// `shutdown` begins, until the session in progress has wound down (`session` sees `shutdown` and
/// ends cleanly); a shutdown between sessions stops the loop at once.
func runSessions(
    _ connection: CoordinatorConnection, until shutdown: WorkerShutdown?, logger: Logger,
    session: @escaping @Sendable (RPCClient) async -> SessionOutcome
) async throws(WorkerError) {
    let presence = SessionPresence()
    let looping = Task { () async -> WorkerError? in
        do throws(WorkerError) {
            try await runCoordinatorSessions(connection, logger: logger) { client in
                guard presence.enter() else { return .stopped }
                defer { presence.leave() }
                return await session(client)
            }
        } catch { return error }
        return nil
    }
    let watcher = Task {
        guard let shutdown else { return }
        await shutdown.wait()
        if !Task.isCancelled, presence.shutDownBetweenSessions() { looping.cancel() }
    }
    let failure = await withTaskCancellationHandler { await looping.value } onCancel: { looping.cancel() }
    watcher.cancel()
    if let failure { throw failure }
}
