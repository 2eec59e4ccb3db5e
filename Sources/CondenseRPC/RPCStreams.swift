import CondenseWire
import Logging

/// Messages arriving on one call: requests on the server, responses on the client.
/// Consuming elements grants the peer flow-control credit (in batches of `FlowControl.grantBatch`),
/// so a slow consumer slows the sender.
public struct RPCMessageStream<Message: WireMessage>: AsyncSequence, Sendable {
    public typealias Element = Message

    private let payloads: AsyncThrowingStream<[UInt8], any Error>
    /// Reports a batch of consumed messages to the transport, which grants that much credit.
    private let consumed: @Sendable (Int) -> Void
    /// Reports an undecodable payload to the transport and returns the error to throw.
    private let undecodable: @Sendable (WireError) -> RPCError

    init(
        payloads: AsyncThrowingStream<[UInt8], any Error>, consumed: @escaping @Sendable (Int) -> Void,
        undecodable: @escaping @Sendable (WireError) -> RPCError
    ) {
        self.payloads = payloads
        self.consumed = consumed
        self.undecodable = undecodable
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(payloads: payloads.makeAsyncIterator(), consumed: consumed, undecodable: undecodable)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        private var payloads: AsyncThrowingStream<[UInt8], any Error>.AsyncIterator
        private let consumed: @Sendable (Int) -> Void
        private let undecodable: @Sendable (WireError) -> RPCError
        private var consumedSinceReport = 0

        fileprivate init(
            payloads: AsyncThrowingStream<[UInt8], any Error>.AsyncIterator, consumed: @escaping @Sendable (Int) -> Void,
            undecodable: @escaping @Sendable (WireError) -> RPCError
        ) {
            self.payloads = payloads
            self.consumed = consumed
            self.undecodable = undecodable
        }

        /// The next message; `nil` at the end of the stream. Throws `RPCError` when the call failed
        /// or was cancelled, or when a message cannot be decoded (INVALID_ARGUMENT / INTERNAL).
        public mutating func next() async throws -> Message? {
            guard let payload = try await payloads.next() else {
                // AsyncThrowingStream ends silently when the iterating task is cancelled.
                if Task.isCancelled { throw RPCError(code: .cancelled, message: "call cancelled") }
                return nil
            }
            consumedSinceReport += 1
            if consumedSinceReport == FlowControl.grantBatch {
                consumed(consumedSinceReport)
                consumedSinceReport = 0
            }
            do {
                return try Message(serializedBytes: payload)
            } catch {
                throw undecodable(error)
            }
        }
    }
}

/// Sends messages on one call: responses on the server, requests on the client.
public struct RPCMessageWriter<Message: WireMessage>: Sendable {
    private let send: @Sendable ([UInt8]) async throws -> Void

    init(send: @escaping @Sendable ([UInt8]) async throws -> Void) {
        self.send = send
    }

    /// Sends `message`; suspends while the peer's flow-control window is exhausted.
    /// Throws `RPCError` once the call has ended (cancelled, deadline, connection closed), or
    /// RESOURCE_EXHAUSTED for a message larger than the maximum frame size.
    public func write(_ message: Message) async throws {
        try await send(message.serializedBytes())
    }
}

/// Per-call options on the client.
public struct CallOptions: Sendable {
    /// Relative deadline; the server cancels the call with DEADLINE_EXCEEDED when it passes.
    public var timeout: Duration?
    public var metadata: [MetadataEntry]

    public init(timeout: Duration? = nil, metadata: [MetadataEntry] = []) {
        self.timeout = timeout
        self.metadata = metadata
    }
}

/// What a server handler knows about its call. Cancellation (client CANCEL, deadline, closed
/// connection) reaches the handler as Swift task cancellation: check `isCancelled` or
/// `Task.checkCancellation()` in long loops.
public struct RPCContext: Sendable {
    public let method: String
    public let metadata: [MetadataEntry]
    /// When the server will cancel the call, if the client set a timeout.
    public let deadline: ContinuousClock.Instant?
    /// The client's address, e.g. `[IPv4]127.0.0.1/127.0.0.1:52144`.
    public let peer: String
    /// Carries `rpc.method`, `rpc.stream` and `rpc.peer` metadata.
    public let logger: Logger

    public init(
        method: String, metadata: [MetadataEntry], deadline: ContinuousClock.Instant?, peer: String, logger: Logger
    ) {
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.peer = peer
        self.logger = logger
    }

    public var isCancelled: Bool { Task.isCancelled }
}
