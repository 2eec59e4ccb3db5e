import CondenseRPC
import CondenseWire
import Foundation
import Logging

/// Where a worker finds its coordinator and how it keeps its session alive: what every worker kind shares.
public struct CoordinatorConnection: Sendable {
    public var host: String
    public var port: Int
    /// Stable id among workers (the coordinator replaces an older session with the same id).
    public var workerID: String
    /// Sent as `authorization: Bearer <token>` when set.
    public var authToken: String?
    /// TLS to a coordinator serving it; nil = plaintext.
    public var tls: RPCClientTLS?
    /// How often a heartbeat goes out; keep it well under the coordinator's heartbeat timeout.
    public var heartbeatInterval: Duration
    /// First wait before reconnecting after a lost session; doubles per failed attempt up to `maxReconnectDelay`.
    public var reconnectDelay: Duration
    public var maxReconnectDelay: Duration
    /// Compute threads reported in Register.
    public var threads: Int

    public init(
        host: String, port: Int, workerID: String, authToken: String? = nil, tls: RPCClientTLS? = nil,
        heartbeatInterval: Duration = .seconds(2),
        reconnectDelay: Duration = .milliseconds(250), maxReconnectDelay: Duration = .seconds(10),
        threads: Int = ProcessInfo.processInfo.activeProcessorCount
    ) {
        self.host = host
        self.port = port
        self.workerID = workerID
        self.authToken = authToken
        self.tls = tls
        self.heartbeatInterval = heartbeatInterval
        self.reconnectDelay = reconnectDelay
        self.maxReconnectDelay = maxReconnectDelay
        self.threads = threads
    }
}

/// Why a worker stopped for good.
public enum WorkerError: Error, CustomStringConvertible, Sendable {
    /// The coordinator refused the session (e.g. bad registration); retrying would not help.
    case rejected(RPCError)

    public var description: String {
        switch self {
        case .rejected(let error): "the coordinator rejected this worker: \(error)"
        }
    }
}

/// How one Connect session of a worker ended.
enum SessionOutcome {
    /// This worker is shutting down (its own signal): stop for good. A Drain from the coordinator is a
    /// lost session instead, so a drained worker rejoins a restarted coordinator.
    case stopped
    /// The coordinator refused the worker: stop and report.
    case rejected(RPCError)
    /// Connection or session lost: dial again.
    case lost(String)
}

/// The dial / session / back-off loop every worker kind shares: connects to the coordinator, runs one
/// session, and after a lost session dials again, waiting `reconnectDelay`, doubled per failed attempt
/// up to `maxReconnectDelay`. Returns when the task is cancelled or the worker stops.
func runCoordinatorSessions(
    _ connection: CoordinatorConnection, logger: Logger, session: (RPCClient) async -> SessionOutcome
) async throws(WorkerError) {
    let reconnectDelay = connection.reconnectDelay
    var delay = reconnectDelay
    while !Task.isCancelled {
        let outcome: SessionOutcome
        do {
            let client = try await RPCClient.connect(
                host: connection.host, port: connection.port, authToken: connection.authToken, tls: connection.tls,
                logger: logger)
            delay = reconnectDelay
            outcome = await session(client)
            await client.close()
        } catch {
            outcome = .lost("\(error)")
        }
        switch outcome {
        case .stopped:
            logger.notice("worker stopped")
            return
        case .rejected(let error):
            throw .rejected(error)
        case .lost(let reason):
            if Task.isCancelled { return }
            logger.warning("coordinator session lost; reconnecting", metadata: ["reason": "\(reason)", "delay": "\(delay)"])
            do { try await Task.sleep(for: delay) } catch { return }
            delay = min(delay * 2, connection.maxReconnectDelay)
        }
    }
}
