import CondenseWire
import Logging
import NIOCore
import NIOPosix

/// A connection to an `RPCServer`. Many calls may run concurrently; they are multiplexed on the
/// one TCP connection. Cancelling the Swift task of a call sends CANCEL to the server.
public final class RPCClient: Sendable {
    private let channel: any Channel
    private let connection: NIOLoopBound<ClientConnectionHandler>
    private let authMetadata: [MetadataEntry]
    public let maxFrameSize: Int

    private init(
        channel: any Channel, connection: NIOLoopBound<ClientConnectionHandler>, authToken: String?,
        maxFrameSize: Int
    ) {
        self.channel = channel
        self.connection = connection
        self.authMetadata = authToken.map { [MetadataEntry(key: "authorization", value: "Bearer \($0)")] } ?? []
        self.maxFrameSize = maxFrameSize
    }

    /// Opens a connection. `authToken` is sent as `authorization: Bearer <token>` on every call.
    /// `keepAliveInterval`: send a PING this often so the server's idle timeout does not close a
    /// connection kept open between calls (`nil`: an idle connection may be closed; reconnect).
    /// `tls`: speak TLS, returning once the handshake completed (nil: plaintext).
    /// Throws `RPCError` UNAVAILABLE when the server cannot be reached or the TLS handshake fails.
    public static func connect(
        host: String, port: Int, authToken: String? = nil,
        maxFrameSize: Int = FrameDecoder.defaultMaximumFrameLength, keepAliveInterval: Duration? = nil,
        tls: RPCClientTLS? = nil, logger: Logger = Logger(label: "condense.rpc.client"),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> RPCClient {
        let channel: any Channel
        let connection: NIOLoopBound<ClientConnectionHandler>
        let handshake: EventLoopFuture<Void>?
        do {
            // The handlers are installed before the connection reads anything.
            (channel, connection, handshake) = try await ClientBootstrap(group: group)
                // TCP level: at socket level the same number is SO_DEBUG, which non-root users may not set.
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handshake = try tls?.addHandlers(to: channel, host: host, port: port)
                        let handler = ClientConnectionHandler(
                            maxFrameSize: maxFrameSize, keepAliveInterval: keepAliveInterval.map(TimeAmount.init),
                            logger: logger)
                        try channel.pipeline.syncOperations.addHandler(handler)
                        return (channel, NIOLoopBound(handler, eventLoop: channel.eventLoop), handshake)
                    }
                }
        } catch {
            throw RPCError(code: .unavailable, message: "cannot connect to \(host):\(port): \(error)")
        }
        if let handshake {
            do {
                try await handshake.get()
            } catch {
                try? await channel.close()
                // The observer's failures are UNAVAILABLE errors that name TLS and the server.
                throw error as? RPCError
                    ?? RPCError(code: .unavailable, message: "TLS connection to \(host):\(port) failed: \(error)")
            }
        }
        return RPCClient(channel: channel, connection: connection, authToken: authToken, maxFrameSize: maxFrameSize)
    }

    /// Closes the connection; calls still running fail with UNAVAILABLE.
    public func close() async {
        try? await channel.close()
    }

    /// Round trip of a PING frame.
    public func ping() async throws -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        let payload = withUnsafeBytes(of: UInt64.random(in: .min ... .max).bigEndian) { Array($0) }
        let connection = self.connection
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.eventLoop.execute { connection.value.ping(payload: payload, promise: promise) }
        try await promise.futureResult.get()
        return clock.now - start
    }

    // MARK: Calls

    public func unary<Request: WireMessage, Response: WireMessage>(
        _ method: String, request: Request, responseType: Response.Type = Response.self,
        options: CallOptions = CallOptions()
    ) async throws -> Response {
        try await withCall(method, options: options, firstMessage: request.serializedBytes(), halfClose: true) {
            call in
            try await call.responses(Response.self).single(missingCode: .internal, role: "response")
        }
    }

    /// Sends one request; `handleResponses` reads the responses as they arrive. Returning from it
    /// before the stream ends cancels the call.
    public func serverStreaming<Request: WireMessage, Response: WireMessage, Result: Sendable>(
        _ method: String, request: Request, responseType: Response.Type = Response.self,
        options: CallOptions = CallOptions(),
        handleResponses: (RPCMessageStream<Response>) async throws -> Result
    ) async throws -> Result {
        try await withCall(method, options: options, firstMessage: request.serializedBytes(), halfClose: true) {
            call in
            try await handleResponses(call.responses(Response.self))
        }
    }

    /// `sendRequests` writes the requests; the call is half-closed when it returns.
    public func clientStreaming<Request: WireMessage, Response: WireMessage>(
        _ method: String, requestType: Request.Type = Request.self, responseType: Response.Type = Response.self,
        options: CallOptions = CallOptions(),
        sendRequests: (RPCMessageWriter<Request>) async throws -> Void
    ) async throws -> Response {
        try await withCall(method, options: options, firstMessage: nil, halfClose: false) { call in
            try await sendRequests(call.writer(Request.self))
            call.halfClose()
            return try await call.responses(Response.self).single(missingCode: .internal, role: "response")
        }
    }

    /// `sendRequests` runs concurrently with `handleResponses`; the call is half-closed when
    /// `sendRequests` returns. If `sendRequests` throws, the call is cancelled.
    public func bidirectional<Request: WireMessage, Response: WireMessage, Result: Sendable>(
        _ method: String, requestType: Request.Type = Request.self, responseType: Response.Type = Response.self,
        options: CallOptions = CallOptions(),
        sendRequests: @escaping @Sendable (RPCMessageWriter<Request>) async throws -> Void,
        handleResponses: (RPCMessageStream<Response>) async throws -> Result
    ) async throws -> Result {
        try await withCall(method, options: options, firstMessage: nil, halfClose: false) { call in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await sendRequests(call.writer(Request.self))
                        call.halfClose()
                    } catch {
                        call.cancel(RPCStatus(code: .cancelled, message: "request writer failed: \(error)"))
                        throw error
                    }
                }
                // Ending the call also fails writes parked on flow control, so the writer task
                // (which future-based waits do not let task cancellation interrupt) finishes.
                do {
                    let result = try await handleResponses(call.responses(Response.self))
                    call.cancel(RPCStatus(code: .cancelled, message: "responses no longer read"))
                    group.cancelAll()
                    return result
                } catch {
                    call.cancel(RPCStatus(code: .cancelled, message: "response handler failed: \(error)"))
                    throw error
                }
            }
        }
    }

    /// Opens a call, runs `body`, and cancels the call if `body` leaves before the server ended
    /// it (error, early return, or task cancellation).
    private func withCall<Result: Sendable>(
        _ method: String, options: CallOptions, firstMessage: [UInt8]?, halfClose: Bool,
        _ body: (ClientCall) async throws -> Result
    ) async throws -> Result {
        try Task.checkCancellation()
        let connection = self.connection
        let metadata = authMetadata + options.metadata
        let timeout = options.timeout
        let opened = try await channel.eventLoop.submit {
            try connection.value.openCall(
                method: method, metadata: metadata, timeout: timeout, firstMessage: firstMessage,
                halfClose: halfClose, connection: connection)
        }.get()
        let call = ClientCall(
            streamID: opened.streamID, payloads: opened.responses, credit: opened.credit, connection: connection,
            maxFrameSize: maxFrameSize)
        return try await withTaskCancellationHandler {
            defer { call.cancel(RPCStatus(code: .cancelled, message: "call abandoned by the client")) }
            return try await body(call)
        } onCancel: {
            call.cancel(RPCStatus(code: .cancelled, message: "call cancelled by the client"))
        }
    }
}

/// The client's handle on one open call.
struct ClientCall: Sendable {
    let streamID: UInt32
    let payloads: AsyncThrowingStream<[UInt8], any Error>
    let credit: SendCredit
    let connection: NIOLoopBound<ClientConnectionHandler>
    let maxFrameSize: Int

    func responses<Message: WireMessage>(_: Message.Type) -> RPCMessageStream<Message> {
        let id = streamID
        let connection = self.connection
        return RPCMessageStream(
            payloads: payloads,
            consumed: { count in
                connection.eventLoop.execute { connection.value.responsesConsumed(id, count: count) }
            },
            undecodable: { error in
                let status = RPCStatus(code: .internal, message: "cannot decode response message: \(error)")
                connection.eventLoop.execute { connection.value.endCall(id, status: status, sendCancel: true) }
                return RPCError(status: status)
            })
    }

    func writer<Message: WireMessage>(_: Message.Type) -> RPCMessageWriter<Message> {
        let id = streamID
        let connection = self.connection
        let maxFrameSize = self.maxFrameSize
        let credit = self.credit
        return RPCMessageWriter { payload in
            if Task.isCancelled { throw RPCError(code: .cancelled, message: "call cancelled by the client") }
            let frame = try Envelope.messageFrame(streamID: id, payload: payload, maximumFrameLength: maxFrameSize)
            let eventLoop = connection.eventLoop
            if credit.take() {
                eventLoop.execute { connection.value.writeWithCredit(id, frame: frame) }
            } else {
                try await eventLoop.flatSubmit { connection.value.sendMessage(id, frame: frame, eventLoop: eventLoop) }
                    .get()
            }
        }
    }

    func halfClose() {
        let id = streamID
        let connection = self.connection
        connection.eventLoop.execute { connection.value.halfClose(id) }
    }

    /// Ends the call locally and sends CANCEL; no effect once the call has ended.
    func cancel(_ status: RPCStatus) {
        let id = streamID
        let connection = self.connection
        connection.eventLoop.execute { connection.value.endCall(id, status: status, sendCancel: true) }
    }
}
