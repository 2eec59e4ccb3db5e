import CondenseRPC
import CondenseWire

/// A call that failed: the RPC status code and message the server (or the transport) reported.
///
/// Connection problems are `UNAVAILABLE`; `retryAfter` is the server's hint on `UNAVAILABLE` and
/// `RESOURCE_EXHAUSTED` (wait that long before trying again).
public struct CondenseClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String
    /// How long the server asked the client to wait before retrying; `nil` when it gave no hint.
    public var retryAfter: Duration?

    public init(code: StatusCode, message: String, retryAfter: Duration? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    /// The status of a failed RPC; a Swift cancellation becomes `CANCELLED`, anything else `UNKNOWN`.
    init(_ error: any Error) {
        switch error {
        case let failure as CondenseClientError: self = failure
        case let failure as RPCError:
            self.init(code: failure.code, message: failure.message, retryAfter: failure.retryAfterMs.map { .milliseconds($0) })
        case is CancellationError: self.init(code: .cancelled, message: "cancelled by the caller")
        default: self.init(code: .unknown, message: "\(error)")
        }
    }

    /// Whether the same call may succeed later: the server was unreachable, going away or overloaded.
    public var isRetryable: Bool { code == .unavailable || code == .resourceExhausted }

    public var description: String {
        var text = message.isEmpty ? code.description : "\(code): \(message)"
        if let retryAfter { text += " (retry after \(retryAfter))" }
        return text
    }
}

/// One text the server could not embed; the other texts of the call are unaffected.
public struct EmbeddingItemError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Position of the text in the input.
    public var index: Int
    public var code: ItemErrorCode
    public var message: String

    public init(index: Int, code: ItemErrorCode, message: String) {
        self.index = index
        self.code = code
        self.message = message
    }

    /// The server's message (it names the problem), or the code when there is none.
    public var description: String {
        guard message.isEmpty else { return message }
        return switch code {
        case .unspecified: "failed"
        case .emptyText: "text is empty"
        case .invalidUTF8: "text is not valid UTF-8"
        case .tooLong: "text is too long"
        case .internal: "the server failed on this text"
        }
    }
}
