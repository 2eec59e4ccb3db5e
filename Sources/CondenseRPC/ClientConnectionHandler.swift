import CondenseWire
import Logging
import NIOCore

/// What `openCall` hands back to the calling task.
struct OpenedCall: Sendable {
    let streamID: UInt32
    let responses: AsyncThrowingStream<[UInt8], any Error>
    let credit: SendCredit
}

/// One call on a client connection. Event-loop confined.
final class ClientCallState {
    let responses: AsyncThrowingStream<[UInt8], any Error>.Continuation
    var inbound = InboundWindow()
    var outbound = OutboundWindow()
    var deadlineTimer: Scheduled<Void>?

    init(responses: AsyncThrowingStream<[UInt8], any Error>.Continuation) {
        self.responses = responses
    }
}

/// The client side of one connection: allocates stream ids, multiplexes calls, routes frames to
/// them, applies flow control and local deadlines. All state lives on the channel's event loop;
/// `RPCClient` reaches it through `eventLoop.submit`/`execute`.
final class ClientConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let maxFrameSize: Int
    private let keepAliveInterval: TimeAmount?
    private let logger: Logger
    private var reader: EnvelopeReader
    private var context: ChannelHandlerContext?
    private var calls: [UInt32: ClientCallState] = [:]
    private var nextStreamID: UInt32 = 1
    /// Why new calls cannot start (GOAWAY, connection error, closed); `nil` while usable.
    private var unusableReason: RPCStatus?
    private var pings: [(payload: [UInt8], promise: EventLoopPromise<Void>)] = []
    private var needsFlush = false
    /// A flush is queued behind the writes of the current loop tick.
    private var flushScheduled = false
    private var keepAlive: RepeatedTask?

    init(maxFrameSize: Int, keepAliveInterval: TimeAmount?, logger: Logger) {
        self.maxFrameSize = maxFrameSize
        self.keepAliveInterval = keepAliveInterval
        self.logger = logger
        self.reader = EnvelopeReader(maximumFrameLength: maxFrameSize)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let keepAliveInterval {
            // Any complete frame resets the server's idle timer; the PING's echo is ignored.
            let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
            keepAlive = context.eventLoop.scheduleRepeatedTask(initialDelay: keepAliveInterval, delay: keepAliveInterval) {
                _ in
                connection.value.write(.ping(payload: []))
                connection.value.flushIfNeeded()
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let reason = unusableReason ?? RPCStatus(code: .unavailable, message: "connection closed")
        unusableReason = reason
        keepAlive?.cancel()
        failAllCalls(with: reason)
        let closed = RPCError(status: reason)
        for ping in pings { ping.promise.fail(closed) }
        pings.removeAll()
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reader.append(unwrapInboundIn(data))
        while self.context != nil {
            let envelope: Envelope?
            do {
                envelope = try reader.next()
            } catch {
                logger.warning("server sent a malformed frame, closing", metadata: ["error": "\(error)"])
                unusableReason = RPCStatus(code: .internal, message: "server sent a malformed frame: \(error)")
                context.close(promise: nil)
                return
            }
            guard let envelope else { break }
            handle(envelope)
        }
        flushIfNeeded()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error, closing", metadata: ["error": "\(error)"])
        if unusableReason == nil {
            unusableReason = RPCStatus(code: .unavailable, message: "connection failed: \(error)")
        }
        context.close(promise: nil)
    }

    // MARK: Frames from the server

    private func handle(_ envelope: Envelope) {
        let id = envelope.streamID
        switch envelope.kind {
        case .message:
            guard let call = calls[id] else { return }  // cancelled locally; late frames are dropped
            guard call.inbound.receive() else {
                return endCall(
                    id,
                    status: RPCStatus(code: .internal, message: "server exceeded the flow-control window"),
                    sendCancel: true)
            }
            call.responses.yield(envelope.payload)
        case .trailers:
            let status = envelope.status ?? RPCStatus(code: .internal, message: "server sent TRAILERS without a status")
            if id == 0 {
                // Connection-level error: the server closes the connection next.
                unusableReason = status
                failAllCalls(with: status)
            } else {
                endCall(id, status: status, sendCancel: false)
            }
        case .cancel:
            let reason = envelope.status?.message ?? ""
            endCall(
                id, status: RPCStatus(code: .cancelled, message: "cancelled by the server: \(reason)"),
                sendCancel: false)
        case .ping:
            if envelope.pingAck {
                if let index = pings.firstIndex(where: { $0.payload == envelope.payload }) {
                    pings.remove(at: index).promise.succeed()
                }
            } else {
                write(.ping(payload: envelope.payload, ack: true))
            }
        case .goAway:
            let reason = envelope.status?.message ?? ""
            let refused = RPCStatus(
                code: .unavailable, message: "server is going away (\(reason)); the call was not processed")
            if unusableReason == nil {
                unusableReason = RPCStatus(code: .unavailable, message: "server is going away: \(reason)")
            }
            for callID in calls.keys.sorted() where callID > id {
                endCall(callID, status: refused, sendCancel: false)
            }
        case .windowUpdate:
            guard let call = calls[id], let context else { return }
            call.outbound.grant(envelope.windowIncrement) { context.writeFrame($0) }
            needsFlush = true
        case .headers:
            logger.debug("ignoring HEADERS from the server", metadata: ["rpc.stream": "\(id)"])
        }
    }

    // MARK: Calls into the loop from RPCClient

    /// Starts a call: HEADERS, plus the first request message and half-close when known up front
    /// (unary and server-streaming calls go out in one write).
    func openCall(
        method: String, metadata: [MetadataEntry], timeout: Duration?, firstMessage: [UInt8]?, halfClose: Bool,
        connection: NIOLoopBound<ClientConnectionHandler>
    ) throws(RPCError) -> OpenedCall {
        if let unusableReason { throw RPCError(status: unusableReason) }
        guard let context else { throw RPCError(code: .unavailable, message: "connection closed") }
        guard nextStreamID < UInt32.max - 1 else {
            throw RPCError(code: .unavailable, message: "stream ids exhausted on this connection; reconnect")
        }
        let id = nextStreamID
        var firstFrame: [UInt8]?
        if let firstMessage {
            firstFrame = try Envelope.messageFrame(streamID: id, payload: firstMessage, maximumFrameLength: maxFrameSize)
        }
        nextStreamID += 2

        // Rounded up so a sub-millisecond timeout still sets a deadline; far futures are clamped.
        let timeoutMs: UInt64 = timeout.map { UInt64(min(max(($0 / .milliseconds(1)).rounded(.up), 1), 1e10)) } ?? 0

        let (responses, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        let call = ClientCallState(responses: continuation)
        calls[id] = call
        if timeoutMs > 0 {
            call.deadlineTimer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(timeoutMs))) {
                connection.value.endCall(
                    id, status: RPCStatus(code: .deadlineExceeded, message: "deadline of \(timeoutMs) ms exceeded"),
                    sendCancel: true)
            }
        }
        context.writeFrame(.headers(streamID: id, method: method, metadata: metadata, timeoutMs: timeoutMs))
        if let firstFrame {
            call.outbound.submit(frame: firstFrame, promise: context.eventLoop.makePromise()) { context.writeFrame($0) }
        }
        if halfClose { context.writeFrame(.halfClose(streamID: id)) }
        context.flush()
        return OpenedCall(streamID: id, responses: responses, credit: call.outbound.credit)
    }

    /// A write whose credit the writer already took: no window check, flushed at the end of the tick.
    func writeWithCredit(_ id: UInt32, frame: [UInt8]) {
        guard let context, calls[id] != nil else { return }
        context.writeFrame(frame)
        needsFlush = true
        guard !flushScheduled else { return }
        flushScheduled = true
        let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            connection.value.flushScheduled = false
            connection.value.flushIfNeeded()
        }
    }

    func sendMessage(_ id: UInt32, frame: [UInt8], eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        guard let context, let call = calls[id] else {
            return eventLoop.makeFailedFuture(RPCError(code: .cancelled, message: "call on stream \(id) has ended"))
        }
        let promise = eventLoop.makePromise(of: Void.self)
        call.outbound.submit(frame: frame, promise: promise) { context.writeFrame($0) }
        context.flush()
        return promise.futureResult
    }

    func halfClose(_ id: UInt32) {
        guard calls[id] != nil else { return }
        write(.halfClose(streamID: id))
        flushIfNeeded()
    }

    func responsesConsumed(_ id: UInt32, count: Int) {
        guard let call = calls[id] else { return }
        write(.windowUpdate(streamID: id, increment: call.inbound.consume(count)))
        flushIfNeeded()
    }

    /// Ends a call locally with `status`; tells the server with CANCEL when `sendCancel`.
    func endCall(_ id: UInt32, status: RPCStatus, sendCancel: Bool) {
        guard let call = calls.removeValue(forKey: id) else { return }
        call.deadlineTimer?.cancel()
        if status.code == .ok {
            call.outbound.failWaiting(with: RPCError(code: .cancelled, message: "the call already completed"))
            call.responses.finish()
        } else {
            let error = RPCError(status: status)
            call.outbound.failWaiting(with: error)
            call.responses.finish(throwing: error)
        }
        if sendCancel {
            write(.cancel(streamID: id, reason: status.message))
            flushIfNeeded()
        }
    }

    func ping(payload: [UInt8], promise: EventLoopPromise<Void>) {
        guard context != nil, unusableReason == nil else {
            promise.fail(RPCError(status: unusableReason ?? RPCStatus(code: .unavailable, message: "connection closed")))
            return
        }
        pings.append((payload, promise))
        write(.ping(payload: payload))
        flushIfNeeded()
    }

    // MARK: Helpers

    private func failAllCalls(with status: RPCStatus) {
        for id in Array(calls.keys) { endCall(id, status: status, sendCancel: false) }
    }

    private func write(_ envelope: Envelope) {
        guard let context else { return }
        context.writeFrame(envelope)
        needsFlush = true
    }

    private func flushIfNeeded() {
        guard needsFlush, let context else { return }
        needsFlush = false
        context.flush()
    }
}
