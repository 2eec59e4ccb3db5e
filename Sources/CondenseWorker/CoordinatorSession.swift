import CondenseRPC
import CondenseWire
import Logging

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
    /// The coordinator drained the worker: stop for good.
    case drained
    /// The coordinator refused the worker: stop and report.
    case rejected(RPCError)
    /// Connection or session lost: dial again.
    case lost(String)
}

/// The dial / session / back-off loop every worker kind shares: connects to the coordinator, runs one
/// session, and after a lost session dials again, waiting `reconnectDelay`, doubled per failed attempt
/// up to `maxReconnectDelay`. Returns when the task is cancelled or the worker is drained.
func runCoordinatorSessions(
    host: String, port: Int, authToken: String?, reconnectDelay: Duration, maxReconnectDelay: Duration, logger: Logger,
    session: (RPCClient) async -> SessionOutcome
) async throws(WorkerError) {
    var delay = reconnectDelay
    while !Task.isCancelled {
        let outcome: SessionOutcome
        do {
            let client = try await RPCClient.connect(host: host, port: port, authToken: authToken, logger: logger)
            delay = reconnectDelay
            outcome = await session(client)
            await client.close()
        } catch {
            outcome = .lost("\(error)")
        }
        switch outcome {
        case .drained:
            logger.notice("drained by the coordinator")
            return
        case .rejected(let error):
            throw .rejected(error)
        case .lost(let reason):
            if Task.isCancelled { return }
            logger.warning("coordinator session lost; reconnecting", metadata: ["reason": "\(reason)", "delay": "\(delay)"])
            do { try await Task.sleep(for: delay) } catch { return }
            delay = min(delay * 2, maxReconnectDelay)
        }
    }
}
