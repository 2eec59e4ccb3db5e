/// gRPC status codes, with gRPC's numbers and names (`condense.v1.StatusCode`).
public enum StatusCode: UInt32, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    /// The protocol name, e.g. `INVALID_ARGUMENT`.
    public var description: String {
        switch self {
        case .ok: "OK"
        case .cancelled: "CANCELLED"
        case .unknown: "UNKNOWN"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .notFound: "NOT_FOUND"
        case .alreadyExists: "ALREADY_EXISTS"
        case .permissionDenied: "PERMISSION_DENIED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"
        case .failedPrecondition: "FAILED_PRECONDITION"
        case .aborted: "ABORTED"
        case .outOfRange: "OUT_OF_RANGE"
        case .unimplemented: "UNIMPLEMENTED"
        case .internal: "INTERNAL"
        case .unavailable: "UNAVAILABLE"
        case .dataLoss: "DATA_LOSS"
        case .unauthenticated: "UNAUTHENTICATED"
        }
    }
}

/// The outcome of a call (`condense.v1.Status`), carried by the server's TRAILERS.
public struct RPCStatus: Sendable, Hashable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String
    /// Retry hint for UNAVAILABLE / RESOURCE_EXHAUSTED; `nil` = none (0 on the wire).
    public var retryAfterMs: UInt32?

    public init(code: StatusCode, message: String = "", retryAfterMs: UInt32? = nil) {
        self.code = code
        self.message = message
        self.retryAfterMs = retryAfterMs == 0 ? nil : retryAfterMs
    }

    public static let ok = RPCStatus(code: .ok)

    public var description: String {
        var text = message.isEmpty ? code.description : "\(code): \(message)"
        if let retryAfterMs { text += " (retry after \(retryAfterMs) ms)" }
        return text
    }
}

/// A call that ended with a non-OK status. Handlers throw it to choose the status the client sees;
/// clients receive it when a call fails.
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String
    public var retryAfterMs: UInt32?

    public init(code: StatusCode, message: String, retryAfterMs: UInt32? = nil) {
        self.code = code
        self.message = message
        self.retryAfterMs = retryAfterMs == 0 ? nil : retryAfterMs
    }

    public init(status: RPCStatus) {
        self.init(code: status.code, message: status.message, retryAfterMs: status.retryAfterMs)
    }

    public var status: RPCStatus { RPCStatus(code: code, message: message, retryAfterMs: retryAfterMs) }

    public var description: String { status.description }
}
