import CondenseRPC
import Logging

/// The one TCP connection a `CondenseClient`'s calls share: opened on first use, and again after it
/// was lost. Calls are multiplexed on it, so a failed call only drops the connection when the
/// connection itself is broken.
actor Connection {
    private let host: String
    private let port: Int
    private let authToken: String?
    private let tls: RPCClientTLS?
    private let logger: Logger
    private var current: RPCClient?
    private var connecting: Task<RPCClient, any Error>?

    /// Keeps an idle connection open between calls (the server closes silent connections after 60 s).
    static let keepAliveInterval = Duration.seconds(20)
    /// How long a ping may take before a connection that just failed a call counts as broken.
    static let probeTimeout = Duration.seconds(5)

    init(host: String, port: Int, authToken: String?, tls: RPCClientTLS?, logger: Logger) {
        self.host = host
        self.port = port
        self.authToken = authToken
        self.tls = tls
        self.logger = logger
    }

    /// The open connection, connecting first when there is none. Throws `RPCError` UNAVAILABLE when
    /// the server cannot be reached.
    func client() async throws -> RPCClient {
        if let current { return current }
        if let connecting { return try await connecting.value }
        let (host, port, authToken, tls, logger) = (host, port, authToken, tls, logger)
        let task = Task {
            try await RPCClient.connect(
                host: host, port: port, authToken: authToken, keepAliveInterval: Self.keepAliveInterval, tls: tls,
                logger: logger)
        }
        connecting = task
        do {
            let client = try await task.value
            connecting = nil
            current = client
            return client
        } catch {
            connecting = nil
            throw error
        }
    }

    /// After `client` failed a call with UNAVAILABLE: forgets it when it no longer answers a ping
    /// (closed, going away), so that the next call reconnects. A server that answered UNAVAILABLE
    /// for its own reasons keeps the connection, and the other calls on it.
    func dropIfBroken(_ client: RPCClient) async {
        guard current === client, await !Self.answersPing(client) else { return }
        // Another call may have replaced the connection during the ping.
        if current === client { current = nil }
        await client.close()
    }

    func close() async {
        let client = current
        current = nil
        await client?.close()
    }

    private static func answersPing(_ client: RPCClient) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await client.ping()) != nil }
            group.addTask {
                try? await Task.sleep(for: probeTimeout)
                return false
            }
            let answered = await group.next() ?? false
            // A ping cannot be cancelled; closing the connection fails it, so the group can end.
            if !answered { await client.close() }
            group.cancelAll()
            return answered
        }
    }
}
