import CondenseWire

/// Live job events for WatchJob callers. Watchers subscribe before they replay the stored log and
/// drop live events they already replayed (by sequence), so nothing falls between the two.
actor JobEventHub {
    private var subscribers: [String: [UInt64: AsyncStream<JobEvent>.Continuation]] = [:]
    private var nextID: UInt64 = 1
    /// Set by `closeAll`: later subscriptions end at once.
    private var closed = false

    func subscribe(_ jobID: String) -> (id: UInt64, events: AsyncStream<JobEvent>) {
        let id = nextID
        nextID += 1
        // Unbounded, but a job emits at most a few events per second and the watcher drains them.
        let (stream, continuation) = AsyncStream<JobEvent>.makeStream()
        if closed { continuation.finish() } else { subscribers[jobID, default: [:]][id] = continuation }
        return (id, stream)
    }

    func unsubscribe(_ jobID: String, _ id: UInt64) {
        subscribers[jobID]?.removeValue(forKey: id)?.finish()
        if subscribers[jobID]?.isEmpty == true { subscribers[jobID] = nil }
    }

    func publish(_ event: JobEvent) {
        for continuation in subscribers[event.jobID, default: [:]].values { continuation.yield(event) }
    }

    /// Ends every watcher's live stream (the coordinator shuts down); a watcher whose job has not
    /// ended then tells its client to watch again later.
    func closeAll() {
        closed = true
        for continuations in subscribers.values {
            for continuation in continuations.values { continuation.finish() }
        }
        subscribers = [:]
    }
}
