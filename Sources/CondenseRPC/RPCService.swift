import CondenseWire

/// A group of methods served by an `RPCServer`.
public protocol RPCService: Sendable {
    func register(in registry: inout RPCMethodRegistry)
}

/// Handlers by gRPC-style method path (`/condense.v1.EmbeddingService/Embed`).
public struct RPCMethodRegistry: Sendable {
    private(set) var methods: [String: RegisteredMethod] = [:]
    /// Paths registered more than once; `RPCServer.start` refuses to serve them.
    public private(set) var duplicateMethods: [String] = []

    public init() {}

    public var registeredMethods: [String] { methods.keys.sorted() }

    public mutating func unary<Request: WireMessage, Response: WireMessage>(
        _ method: String, handler: @escaping @Sendable (Request, RPCContext) async throws -> Response
    ) {
        add(method) { io, context in
            let request = try await io.requests(Request.self).single(missingCode: .invalidArgument, role: "request")
            let response = try await handler(request, context)
            try await io.send(response.serializedBytes())
        }
    }

    public mutating func serverStreaming<Request: WireMessage, Response: WireMessage>(
        _ method: String,
        handler: @escaping @Sendable (Request, RPCMessageWriter<Response>, RPCContext) async throws -> Void
    ) {
        add(method) { io, context in
            let request = try await io.requests(Request.self).single(missingCode: .invalidArgument, role: "request")
            try await handler(request, RPCMessageWriter(send: io.send), context)
        }
    }

    public mutating func clientStreaming<Request: WireMessage, Response: WireMessage>(
        _ method: String,
        handler: @escaping @Sendable (RPCMessageStream<Request>, RPCContext) async throws -> Response
    ) {
        add(method) { io, context in
            let response = try await handler(io.requests(Request.self), context)
            try await io.send(response.serializedBytes())
        }
    }

    public mutating func bidirectional<Request: WireMessage, Response: WireMessage>(
        _ method: String,
        handler: @escaping @Sendable (RPCMessageStream<Request>, RPCMessageWriter<Response>, RPCContext) async throws
            -> Void
    ) {
        add(method) { io, context in
            try await handler(io.requests(Request.self), RPCMessageWriter(send: io.send), context)
        }
    }

    private mutating func add(
        _ method: String, run: @escaping @Sendable (ServerCallIO, RPCContext) async throws -> Void
    ) {
        if methods[method] != nil { duplicateMethods.append(method) }
        methods[method] = RegisteredMethod(run: run)
    }
}

/// A handler with its message types erased.
struct RegisteredMethod: Sendable {
    let run: @Sendable (ServerCallIO, RPCContext) async throws -> Void
}

/// The untyped plumbing of one server call.
struct ServerCallIO: Sendable {
    let payloads: AsyncThrowingStream<[UInt8], any Error>
    let consumed: @Sendable (Int) -> Void
    let undecodable: @Sendable (WireError) -> RPCError
    let send: @Sendable ([UInt8]) async throws -> Void

    func requests<Message: WireMessage>(_: Message.Type) -> RPCMessageStream<Message> {
        RPCMessageStream(payloads: payloads, consumed: consumed, undecodable: undecodable)
    }
}

extension RPCMessageStream {
    /// Reads exactly one message, then the end of the stream.
    func single(missingCode: StatusCode, role: String) async throws -> Message {
        var iterator = makeAsyncIterator()
        guard let message = try await iterator.next() else {
            throw RPCError(code: missingCode, message: "expected one \(role) message, got none")
        }
        guard try await iterator.next() == nil else {
            throw RPCError(code: missingCode, message: "expected one \(role) message, got more")
        }
        return message
    }
}
