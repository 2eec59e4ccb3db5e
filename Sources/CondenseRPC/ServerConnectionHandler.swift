import CondenseWire
import Logging
import NIOCore

/// One call on a server connection. Event-loop confined.
final class ServerStreamState {
    let method: String
    let payloads: AsyncThrowingStream<[UInt8], any Error>.Continuation
    var inbound = InboundWindow()
    var outbound = OutboundWindow()
    var halfClosed = false
    var task: Task<Void, Never>?
    var deadlineTimer: Scheduled<Void>?
    /// When the call opened; set only when the server records metrics.
    var startedAt: NIODeadline?

    init(method: String, payloads: AsyncThrowingStream<[UInt8], any Error>.Continuation) {
        self.method = method
        self.payloads = payloads
    }
}

/// Settings a server connection needs, copied from `RPCServer.Configuration`.
struct ServerConnectionSettings: Sendable {
    var maxFrameSize: Int
    var authToken: String?
    var idleTimeout: TimeAmount
    var shutdownGracePeriod: TimeAmount
    var maxConcurrentStreams: Int
}

/// The server side of one connection: decodes frames, runs each call's handler in its own task,
/// and applies flow control, deadlines, cancellation, idle timeout and graceful shutdown.
/// All state lives on the channel's event loop; handler tasks reach it through `eventLoop.execute`.
final class ServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let settings: ServerConnectionSettings
    private let methods: [String: RegisteredMethod]
    /// This event loop's call counters; nil when the server records no metrics.
    private let calls: CallTable?
    private var logger: Logger
    private var reader: EnvelopeReader
    private var context: ChannelHandlerContext?
    private var peer = "unknown"
    private var streams: [UInt32: ServerStreamState] = [:]
    private var highestStreamID: UInt32 = 0
    /// Set once GOAWAY was sent: streams above it are refused; the connection closes when drained.
    private var goAwayStreamID: UInt32?
    /// Set once the connection is being torn down: further input is ignored.
    private var closing = false
    private var needsFlush = false
    /// A flush is queued behind the writes of the current loop tick.
    private var flushScheduled = false
    private var lastFrameAt = NIODeadline.now()
    private var idleCheck: RepeatedTask?
    private var graceTimer: Scheduled<Void>?

    init(settings: ServerConnectionSettings, methods: [String: RegisteredMethod], calls: CallTable?, logger: Logger) {
        self.settings = settings
        self.methods = methods
        self.calls = calls
        self.logger = logger
        self.reader = EnvelopeReader(maximumFrameLength: settings.maxFrameSize)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        peer = context.channel.remoteAddress?.description ?? "unknown"
        logger[metadataKey: "rpc.peer"] = "\(peer)"
        lastFrameAt = .now()
        let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
        let checkInterval = TimeAmount.nanoseconds(max(settings.idleTimeout.nanoseconds / 4, 10_000_000))
        idleCheck = context.eventLoop.scheduleRepeatedTask(initialDelay: checkInterval, delay: checkInterval) { _ in
            connection.value.closeIfIdle()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        idleCheck?.cancel()
        graceTimer?.cancel()
        for id in Array(streams.keys) {
            finishStream(id, status: nil, cancelHandler: true, reason: "connection closed")
        }
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        reader.append(unwrapInboundIn(data))
        while !closing {
            let envelope: Envelope?
            do {
                envelope = try reader.next()
            } catch {
                rejectConnection(for: error)
                return
            }
            guard let envelope else { break }
            lastFrameAt = .now()
            handle(envelope)
        }
        flushIfNeeded()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            beginGracefulShutdown()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error, closing", metadata: ["error": "\(error)"])
        closing = true
        context.close(promise: nil)
    }

    // MARK: Frames

    private func handle(_ envelope: Envelope) {
        let id = envelope.streamID
        switch envelope.kind {
        case .headers:
            openStream(envelope)
        case .message:
            receiveMessage(envelope)
        case .trailers:
            if let state = streams[id], !state.halfClosed {
                state.halfClosed = true
                state.payloads.finish()
            }
        case .cancel:
            finishStream(id, status: nil, cancelHandler: true, reason: "cancelled by the client")
        case .ping:
            if !envelope.pingAck { write(.ping(payload: envelope.payload, ack: true)) }
        case .goAway:
            logger.debug("client sent GOAWAY", metadata: ["rpc.stream": "\(id)"])
        case .windowUpdate:
            guard let state = streams[id], let context else { return }
            state.outbound.grant(envelope.windowIncrement) { context.writeFrame($0) }
            needsFlush = true
        }
    }

    private func openStream(_ headers: Envelope) {
        let id = headers.streamID
        guard id % 2 == 1, id > highestStreamID else {
            rejectConnection(
                status: RPCStatus(
                    code: .invalidArgument,
                    message: "HEADERS stream id \(id) must be odd and greater than \(highestStreamID)"))
            return
        }
        highestStreamID = id
        if let goAwayStreamID, id > goAwayStreamID {
            return refuse(headers, .unavailable, "server is shutting down; stream \(id) was not accepted")
        }
        if let token = settings.authToken,
            !constantTimeEquals(headers.metadata.value(forKey: "authorization") ?? "", "Bearer \(token)")
        {
            return refuse(headers, .unauthenticated, "missing or invalid bearer token in metadata 'authorization'")
        }
        guard let method = methods[headers.method] else {
            return refuse(headers, .unimplemented, "unknown method '\(headers.method)'")
        }
        guard streams.count < settings.maxConcurrentStreams else {
            return refuse(
                headers, .resourceExhausted, "too many concurrent calls (maximum \(settings.maxConcurrentStreams))")
        }
        guard let context else { return }
        startCall(id: id, headers: headers, method: method, eventLoop: context.eventLoop)
    }

    private func startCall(id: UInt32, headers: Envelope, method: RegisteredMethod, eventLoop: any EventLoop) {
        let (payloads, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        let state = ServerStreamState(method: headers.method, payloads: continuation)
        streams[id] = state
        if let calls {
            state.startedAt = .now()
            calls.started()
        }

        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        let credit = state.outbound.credit
        let maxFrameSize = settings.maxFrameSize
        let io = ServerCallIO(
            payloads: payloads,
            consumed: { count in
                eventLoop.execute { connection.value.requestsConsumed(id, count: count) }
            },
            undecodable: { error in
                let failure = RPCError(code: .invalidArgument, message: "cannot decode request message: \(error)")
                eventLoop.execute {
                    connection.value.finishStream(
                        id, status: failure.status, cancelHandler: true, reason: "undecodable request")
                }
                return failure
            },
            send: { payload in
                if Task.isCancelled { throw RPCError(code: .cancelled, message: "call on stream \(id) was cancelled") }
                let frame = try Envelope.messageFrame(streamID: id, payload: payload, maximumFrameLength: maxFrameSize)
                if credit.take() {
                    eventLoop.execute { connection.value.writeWithCredit(id, frame: frame) }
                } else {
                    try await eventLoop.flatSubmit { connection.value.sendMessage(id, frame: frame, eventLoop: eventLoop) }
                        .get()
                }
            })

        var deadline: ContinuousClock.Instant?
        if headers.timeoutMs > 0 {
            // Far-future timeouts are clamped so the timer arithmetic cannot overflow.
            let milliseconds = Int64(min(headers.timeoutMs, 10_000_000_000))
            deadline = .now + .milliseconds(milliseconds)
            state.deadlineTimer = eventLoop.scheduleTask(in: .milliseconds(milliseconds)) {
                connection.value.finishStream(
                    id, status: RPCStatus(code: .deadlineExceeded, message: "deadline of \(milliseconds) ms exceeded"),
                    cancelHandler: true, reason: "deadline exceeded")
            }
        }

        var callLogger = logger
        callLogger[metadataKey: "rpc.method"] = "\(headers.method)"
        callLogger[metadataKey: "rpc.stream"] = "\(id)"
        let callContext = RPCContext(
            method: headers.method, metadata: headers.metadata, deadline: deadline, peer: peer, logger: callLogger)
        let run = method.run
        state.task = Task {
            let status: RPCStatus
            do {
                try await run(io, callContext)
                status = .ok
            } catch let error as RPCError {
                status = error.status
            } catch is CancellationError {
                status = RPCStatus(code: .cancelled, message: "handler was cancelled")
            } catch {
                status = RPCStatus(code: .internal, message: "handler failed: \(error)")
            }
            eventLoop.execute {
                connection.value.finishStream(id, status: status, cancelHandler: false, reason: "handler returned")
            }
        }
    }

    private func receiveMessage(_ message: Envelope) {
        let id = message.streamID
        guard let state = streams[id] else {
            if id == 0 || id > highestStreamID {
                rejectConnection(
                    status: RPCStatus(code: .invalidArgument, message: "MESSAGE for stream \(id), which was never opened"))
            }
            // Otherwise the call already ended (cancelled, refused, deadline): late messages are dropped.
            return
        }
        guard !state.halfClosed else {
            return finishStream(
                id, status: RPCStatus(code: .invalidArgument, message: "MESSAGE after half-close on stream \(id)"),
                cancelHandler: true, reason: "protocol violation")
        }
        guard state.inbound.receive() else {
            return finishStream(
                id,
                status: RPCStatus(
                    code: .resourceExhausted, message: "stream \(id) sent more messages than its flow-control window"),
                cancelHandler: true, reason: "flow-control violation")
        }
        state.payloads.yield(message.payload)
    }

    // MARK: Calls into the loop from handler tasks

    private func requestsConsumed(_ id: UInt32, count: Int) {
        guard let state = streams[id] else { return }
        write(.windowUpdate(streamID: id, increment: state.inbound.consume(count)))
        flushIfNeeded()
    }

    /// A write whose credit the writer already took: no window check, flushed at the end of the tick.
    private func writeWithCredit(_ id: UInt32, frame: [UInt8]) {
        guard let context, streams[id] != nil else { return }
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

    /// A write that found no credit: waits on the loop for a WINDOW_UPDATE.
    private func sendMessage(_ id: UInt32, frame: [UInt8], eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        guard let context, let state = streams[id] else {
            return eventLoop.makeFailedFuture(
                RPCError(code: .cancelled, message: "call on stream \(id) is no longer active"))
        }
        let promise = eventLoop.makePromise(of: Void.self)
        state.outbound.submit(frame: frame, promise: promise) { context.writeFrame($0) }
        context.flush()
        return promise.futureResult
    }

    /// Ends a call: sends TRAILERS with `status` (none when `nil`), stops its handler when
    /// `cancelHandler`, and fails its parked writes. Later frames for the stream are ignored.
    private func finishStream(_ id: UInt32, status: RPCStatus?, cancelHandler: Bool, reason: String) {
        guard let state = streams.removeValue(forKey: id) else { return }
        state.deadlineTimer?.cancel()
        if let calls, let startedAt = state.startedAt {
            // No status: the call ended without TRAILERS (client cancel, connection gone).
            let seconds = Double((NIODeadline.now() - startedAt).nanoseconds) / 1e9
            calls.finished(state.method, status?.code ?? .cancelled, seconds: seconds)
        }
        let endCode: StatusCode = if let status, status.code != .ok { status.code } else { .cancelled }
        let ended = RPCError(code: endCode, message: "call ended: \(reason)")
        state.outbound.failWaiting(with: ended)
        state.payloads.finish(throwing: ended)
        if cancelHandler { state.task?.cancel() }
        if let status {
            if status.code != .ok {
                logger.debug(
                    "call failed", metadata: ["rpc.stream": "\(id)", "rpc.status": "\(status)"])
            }
            write(.trailers(streamID: id, status: status))
            flushIfNeeded()
        }
        if goAwayStreamID != nil && streams.isEmpty && !closing { closeWhenFlushed() }
    }

    // MARK: Connection lifecycle

    /// Answers a stream that will not be served with TRAILERS and forgets it.
    private func refuse(_ headers: Envelope, _ code: StatusCode, _ message: String) {
        let id = headers.streamID
        calls?.refused(methods[headers.method] == nil ? RPCServerMetrics.unknownMethod : headers.method, code)
        logger.debug("call refused", metadata: ["rpc.stream": "\(id)", "rpc.status": "\(code): \(message)"])
        write(.trailers(streamID: id, status: RPCStatus(code: code, message: message)))
    }

    private func rejectConnection(for error: WireError) {
        switch error {
        case .frameTooLarge:
            rejectConnection(status: RPCStatus(code: .resourceExhausted, message: error.description))
        case .undecodable, .invalidField:
            rejectConnection(status: RPCStatus(code: .invalidArgument, message: "malformed frame: \(error)"))
        }
    }

    /// Connection-level protocol error: TRAILERS on stream 0, GOAWAY, close.
    private func rejectConnection(status: RPCStatus) {
        guard !closing else { return }
        logger.info("closing connection after protocol error", metadata: ["rpc.status": "\(status)"])
        write(.trailers(streamID: 0, status: status))
        write(.goAway(lastStreamID: highestStreamID, reason: status.message))
        for id in Array(streams.keys) {
            finishStream(id, status: nil, cancelHandler: true, reason: "connection rejected")
        }
        closeWhenFlushed()
    }

    private func beginGracefulShutdown() {
        guard goAwayStreamID == nil, !closing, let context else { return }
        goAwayStreamID = highestStreamID
        write(.goAway(lastStreamID: highestStreamID, reason: "server shutting down"))
        flushIfNeeded()
        if streams.isEmpty {
            closeWhenFlushed()
        } else {
            let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
            graceTimer = context.eventLoop.scheduleTask(in: settings.shutdownGracePeriod) {
                connection.value.endGracePeriod()
            }
        }
    }

    private func endGracePeriod() {
        for id in Array(streams.keys) {
            finishStream(
                id, status: RPCStatus(code: .unavailable, message: "server shut down before the call completed"),
                cancelHandler: true, reason: "shutdown grace period over")
        }
        closeWhenFlushed()
    }

    private func closeIfIdle() {
        guard !closing, NIODeadline.now() - lastFrameAt >= settings.idleTimeout else { return }
        // Calls in progress may legitimately be quiet; a half-received frame may not.
        guard streams.isEmpty || reader.hasPartialFrame else { return }
        logger.debug("closing idle connection", metadata: ["rpc.partialFrame": "\(reader.hasPartialFrame)"])
        write(.goAway(lastStreamID: highestStreamID, reason: "idle timeout"))
        for id in Array(streams.keys) {
            finishStream(id, status: nil, cancelHandler: true, reason: "idle timeout")
        }
        closeWhenFlushed()
    }

    /// Closes once everything written so far has reached the socket.
    private func closeWhenFlushed() {
        guard !closing, let context else { return }
        closing = true
        let channel = context.channel
        let flushed = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(channel.allocator.buffer(capacity: 0)), promise: flushed)
        needsFlush = false
        flushed.futureResult.whenComplete { _ in channel.close(promise: nil) }
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

/// Compares secrets in time independent of where they differ.
func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
    let left = Array(lhs.utf8)
    let right = Array(rhs.utf8)
    var difference = left.count ^ right.count
    for index in 0..<max(left.count, right.count) {
        let a = index < left.count ? left[index] : 0
        let b = index < right.count ? right[index] : 0
        difference |= Int(a ^ b)
    }
    return difference == 0
}
