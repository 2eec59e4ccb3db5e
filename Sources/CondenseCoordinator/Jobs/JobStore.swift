import CondenseRPC
import CondenseWire
import Foundation
import GRDB

/// Durable fine-tuning state: jobs, their event logs and the adapters they produced, in one SQLite
/// database (WAL) under the coordinator's state directory.
///
/// Every state change is one transaction that appends the event and updates the job together, so a
/// crash leaves either both or neither. Jobs and events are stored as their wire messages (the
/// `.proto` files are the schema) next to the columns queries need.
public final class JobStore: Sendable {
    private let database: DatabasePool

    /// Opens (creating if needed) `directory/coordinator.sqlite`.
    public init(directory: String) throws(RPCError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            // SQLite answers "database is locked" at once by default; a lock held for a moment (a WAL checkpoint,
            // a predecessor process still closing the file) is waited for instead of failing the call.
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            database = try DatabasePool(
                path: (directory as NSString).appendingPathComponent("coordinator.sqlite"), configuration: configuration)
            try Self.migrator.migrate(database)
        } catch {
            throw RPCError(code: .internal, message: "cannot open the job database in \(directory): \(error)")
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "job") { table in
                table.primaryKey("id", .text)
                table.column("number", .integer).notNull().unique()
                table.column("state", .integer).notNull()
                table.column("message", .blob).notNull()  // FineTuneJob
                table.column("pairs", .blob)              // PairChunk of uploaded pairs; NULL = spec.pairs_path
                table.column("checkpoint_id", .text)      // newest resumable checkpoint
                table.column("checkpoint_step", .integer).notNull().defaults(to: 0)
            }
            try db.create(table: "event") { table in
                table.column("job_id", .text).notNull().references("job", onDelete: .cascade)
                table.column("sequence", .integer).notNull()
                table.column("message", .blob).notNull()  // JobEvent
                table.primaryKey(["job_id", "sequence"])
            }
            try db.create(table: "adapter") { table in
                table.primaryKey("id", .text)
                table.column("created_unix_ms", .integer).notNull()
                table.column("message", .blob).notNull()  // Adapter
            }
        }
        return migrator
    }

    // MARK: Jobs

    /// Creates a job in VALIDATING with the next id (`ft-0001`, ...).
    public func createJob(spec: FineTuneJobSpec, pairs: [TrainingPair]?, pairCount: UInt64, totalSteps: UInt32) async throws(RPCError) -> FineTuneJob {
        let now = Self.nowMs()
        let pairBytes = pairs.map { Data(PairChunk(pairs: $0).serializedBytes()) }
        return try await write { db in
            let number = (try Int64.fetchOne(db, sql: "SELECT MAX(number) FROM job") ?? 0) + 1
            let job = FineTuneJob(
                jobID: String(format: "ft-%04lld", number), state: .validating, spec: spec, pairCount: pairCount,
                totalSteps: totalSteps, createdUnixMs: now)
            try db.execute(
                sql: "INSERT INTO job (id, number, state, message, pairs) VALUES (?, ?, ?, ?, ?)",
                arguments: [job.jobID, number, job.state.rawValue, Data(job.serializedBytes()), pairBytes])
            return job
        }
    }

    public func job(_ id: String) async throws(RPCError) -> FineTuneJob {
        try await read { db in try Self.job(id, db) }
    }

    /// Jobs newest first, optionally only in `states`, at most `limit` (0 = all).
    public func jobs(states: [JobState] = [], limit: Int = 0) async throws(RPCError) -> [FineTuneJob] {
        try await read { db in
            var sql = "SELECT message FROM job"
            var arguments = StatementArguments()
            if !states.isEmpty {
                sql += " WHERE state IN (\(states.map { _ in "?" }.joined(separator: ",")))"
                arguments = StatementArguments(states.map(\.rawValue))
            }
            sql += " ORDER BY number DESC"
            if limit > 0 { sql += " LIMIT \(limit)" }
            return try Data.fetchAll(db, sql: sql, arguments: arguments).map { try FineTuneJob(serializedBytes: $0) }
        }
    }

    /// Jobs that still need a training worker, oldest first: QUEUED, RUNNING (their worker is gone
    /// after a coordinator restart) and VALIDATING (validation never finished).
    public func unfinishedJobs() async throws(RPCError) -> [FineTuneJob] {
        try await read { db in
            try Data.fetchAll(
                db, sql: "SELECT message FROM job WHERE state IN (?, ?, ?) ORDER BY number",
                arguments: [JobState.validating.rawValue, JobState.queued.rawValue, JobState.running.rawValue]
            ).map { try FineTuneJob(serializedBytes: $0) }
        }
    }

    /// How many jobs are in each state (states without jobs absent), counted by the database.
    public func jobCounts() async throws(RPCError) -> [JobState: Int] {
        try await read { db in
            var counts: [JobState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS count FROM job GROUP BY state") {
                let state: Int32 = row["state"]
                if let known = JobState(rawValue: state) { counts[known] = row["count"] }
            }
            return counts
        }
    }

    /// Pairs uploaded with the job; nil when it trains from `spec.pairs_path`.
    public func uploadedPairs(_ id: String) async throws(RPCError) -> [TrainingPair]? {
        try await read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT pairs FROM job WHERE id = ?", arguments: [id]) else {
                throw RPCError(code: .notFound, message: "unknown job '\(id)'")
            }
            let bytes: Data? = row["pairs"]
            return try bytes.map { try PairChunk(serializedBytes: $0).pairs }
        }
    }

    /// The newest checkpoint to resume from: (id, step), or nil for a fresh start.
    public func resumePoint(_ id: String) async throws(RPCError) -> (checkpointID: String, step: UInt32)? {
        try await read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT checkpoint_id, checkpoint_step FROM job WHERE id = ?", arguments: [id])
            else { throw RPCError(code: .notFound, message: "unknown job '\(id)'") }
            let checkpoint: String? = row["checkpoint_id"]
            let step: Int64 = row["checkpoint_step"]
            return checkpoint.map { ($0, UInt32(clamping: step)) }
        }
    }

    // MARK: Events

    /// Appends an event to the job's log and applies it to the job, in one transaction. Returns the
    /// numbered event and the updated job; nil when the job is already terminal (the event is
    /// dropped: a terminal job never changes).
    @discardableResult
    public func append(_ kind: JobEvent.Kind, to id: String) async throws(RPCError) -> (event: JobEvent, job: FineTuneJob)? {
        let now = Self.nowMs()
        return try await write { db in
            var job = try Self.job(id, db)
            guard !job.state.isTerminal else { return nil }
            let event = JobEvent(sequence: job.lastSequence + 1, jobID: id, unixMs: now, kind: kind)
            Self.apply(event, to: &job)
            try db.execute(
                sql: "INSERT INTO event (job_id, sequence, message) VALUES (?, ?, ?)",
                arguments: [id, Int64(event.sequence), Data(event.serializedBytes())])
            try db.execute(
                sql: "UPDATE job SET state = ?, message = ? WHERE id = ?",
                arguments: [job.state.rawValue, Data(job.serializedBytes()), id])
            if case .checkpoint(let saved) = kind {
                try db.execute(
                    sql: "UPDATE job SET checkpoint_id = ?, checkpoint_step = ? WHERE id = ?",
                    arguments: [saved.checkpointID, Int64(saved.step), id])
            }
            return (event, job)
        }
    }

    /// The job's events with `sequence > after`, in order.
    public func events(of id: String, after: UInt64) async throws(RPCError) -> [JobEvent] {
        try await read { db in
            _ = try Self.job(id, db)
            return try Data.fetchAll(
                db, sql: "SELECT message FROM event WHERE job_id = ? AND sequence > ? ORDER BY sequence",
                arguments: [id, Int64(clamping: after)]
            ).map { try JobEvent(serializedBytes: $0) }
        }
    }

    /// What an event does to its job (the state machine of Protos/services.md).
    static func apply(_ event: JobEvent, to job: inout FineTuneJob) {
        job.lastSequence = event.sequence
        switch event.kind {
        case .queued:
            job.state = .queued
            job.workerID = ""
        case .started(let started):
            job.state = .running
            job.workerID = started.workerID
            if job.startedUnixMs == 0 { job.startedUnixMs = event.unixMs }
        case .step(let metrics):
            job.step = metrics.step
            job.totalSteps = metrics.totalSteps
            job.lastLoss = metrics.loss
        case .checkpoint:
            break
        case .finished(let finished):
            job.state = .succeeded
            job.adapterID = finished.adapterID
            job.lastLoss = finished.finalLoss
            job.step = job.totalSteps
            job.finishedUnixMs = event.unixMs
        case .failed(let failed):
            job.state = .failed
            job.error = failed.reason
            job.finishedUnixMs = event.unixMs
        case .cancelled:
            job.state = .cancelled
            job.finishedUnixMs = event.unixMs
        case nil:
            break
        }
    }

    // MARK: Adapters

    public func addAdapter(_ adapter: Adapter) async throws(RPCError) {
        try await write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO adapter (id, created_unix_ms, message) VALUES (?, ?, ?)",
                arguments: [adapter.adapterID, adapter.createdUnixMs, Data(adapter.serializedBytes())])
        }
    }

    public func adapter(_ id: String) async throws(RPCError) -> Adapter? {
        try await read { db in
            try Data.fetchOne(db, sql: "SELECT message FROM adapter WHERE id = ?", arguments: [id]).map { try Adapter(serializedBytes: $0) }
        }
    }

    /// All adapters, newest first.
    public func adapters() async throws(RPCError) -> [Adapter] {
        try await read { db in
            try Data.fetchAll(db, sql: "SELECT message FROM adapter ORDER BY created_unix_ms DESC, id")
                .map { try Adapter(serializedBytes: $0) }
        }
    }

    /// Whether an adapter id is taken by a stored adapter or promised to an unfinished job.
    public func adapterIDTaken(_ id: String) async throws(RPCError) -> Bool {
        if try await adapter(id) != nil { return true }
        return try await unfinishedJobs().contains { $0.spec?.adapterID == id }
    }

    // MARK: Plumbing

    private static func job(_ id: String, _ db: Database) throws -> FineTuneJob {
        guard let bytes = try Data.fetchOne(db, sql: "SELECT message FROM job WHERE id = ?", arguments: [id]) else {
            throw RPCError(code: .notFound, message: "unknown job '\(id)'")
        }
        return try FineTuneJob(serializedBytes: bytes)
    }

    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(RPCError) -> T {
        do { return try await database.read(body) } catch { throw Self.rpcError(error) }
    }

    private func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(RPCError) -> T {
        do { return try await database.write(body) } catch { throw Self.rpcError(error) }
    }

    private static func rpcError(_ error: any Error) -> RPCError {
        if let error = error as? RPCError { return error }
        return RPCError(code: .internal, message: "job database: \(error)")
    }

    static func nowMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
}

extension JobState {
    /// SUCCEEDED, FAILED and CANCELLED: the job never changes again.
    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}
