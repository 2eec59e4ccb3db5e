import CondenseWire
import Foundation

/// Open while the coordinator serves; closed once it shuts down, after which new calls are refused
/// with UNAVAILABLE (and a retry hint) while the calls and worker sessions already running wind down.
final class ShutdownGate: @unchecked Sendable {
    private let lock = NSLock()
    private var closed = false
    private let retryAfterMs: UInt32

    init(retryAfterMs: UInt32) {
        self.retryAfterMs = retryAfterMs
    }

    var isClosed: Bool { lock.withLock { closed } }

    func close() { lock.withLock { closed = true } }

    /// Throws UNAVAILABLE once closed: the first thing every new call does.
    func admit() throws(RPCError) {
        guard !isClosed else {
            throw RPCError(code: .unavailable, message: "the server is shutting down", retryAfterMs: retryAfterMs)
        }
    }
}
