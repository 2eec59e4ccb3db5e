import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix

/// Whether a process can take work now, as `/readyz` reports it.
public enum Readiness: Sendable, Equatable {
    case ready
    /// The one-line reason goes into the 503 body.
    case notReady(String)
}

/// The operations port: plain HTTP/1.1 beside the RPC port, for supervisors and Prometheus.
///
/// - `GET /healthz`: 200 `ok` while the process runs; 503 once `beginShutdown()` was called.
/// - `GET /readyz`: 200 `ready` when `readiness` says so, else 503 with its reason.
/// - `GET /metrics`: every collector's families in Prometheus text format 0.0.4.
///
/// Other paths get 404 and other methods 405. Query strings are ignored.
public actor OperationsServer {
    private let host: String
    private let requestedPort: Int
    private let endpoints: OperationsEndpoints
    private let logger: Logger
    private let group: any EventLoopGroup
    private var channel: (any Channel)?
    private var quiescing: ServerQuiescingHelper?

    /// `port` 0 picks a free port; `start()` returns the bound one.
    public init(
        host: String, port: Int, readiness: @escaping @Sendable () async -> Readiness, metrics: [MetricsCollector],
        logger: Logger = Logger(label: "condense.operations"),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.host = host
        requestedPort = port
        endpoints = OperationsEndpoints(readiness: readiness, collectors: metrics)
        self.logger = logger
        self.group = group
    }

    /// Binds and starts answering; returns the bound port (a second call only returns it).
    @discardableResult
    public func start() async throws -> Int {
        if let port { return port }
        let quiescing = ServerQuiescingHelper(group: group)
        let endpoints = self.endpoints
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(OperationsHTTPHandler(endpoints: endpoints))
                }
            }
            .bind(host: host, port: requestedPort)
            .get()
        self.channel = channel
        self.quiescing = quiescing
        let port = channel.localAddress?.port ?? requestedPort
        logger.notice("operations port listening", metadata: ["address": "\(host):\(port)", "paths": "/healthz /readyz /metrics"])
        return port
    }

    /// The bound port while running.
    public var port: Int? { channel?.localAddress?.port }

    /// From now on `/healthz` answers 503: the process is shutting down.
    public nonisolated func beginShutdown() {
        endpoints.shuttingDown.withLockedValue { $0 = true }
    }

    /// Stops accepting connections and closes the open ones once their responses are out.
    public func stop() async throws {
        guard let quiescing else { return }
        self.quiescing = nil
        let closed = group.next().makePromise(of: Void.self)
        quiescing.initiateShutdown(promise: closed)
        try await closed.futureResult.get()
        channel = nil
    }
}

/// What the three paths answer; shared by every connection.
final class OperationsEndpoints: Sendable {
    struct Response: Sendable {
        var status: HTTPResponseStatus
        var contentType = "text/plain; charset=utf-8"
        var body: String
        var headers: [(String, String)] = []
    }

    let readiness: @Sendable () async -> Readiness
    let collectors: [MetricsCollector]
    let shuttingDown = NIOLockedValueBox(false)

    init(readiness: @escaping @Sendable () async -> Readiness, collectors: [MetricsCollector]) {
        self.readiness = readiness
        self.collectors = collectors
    }

    private enum Path: String {
        case healthz = "/healthz", readyz = "/readyz", metrics = "/metrics"
    }

    func response(method: HTTPMethod, uri: String) async -> Response {
        let pathText = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? uri
        guard let path = Path(rawValue: pathText) else {
            return Response(status: .notFound, body: "not found: \(pathText)\n")
        }
        guard method == .GET else {
            return Response(status: .methodNotAllowed, body: "only GET\n", headers: [("Allow", "GET")])
        }
        let shuttingDown = self.shuttingDown.withLockedValue { $0 }
        switch path {
        case .healthz:
            return shuttingDown ? Response(status: .serviceUnavailable, body: "shutting down\n") : Response(status: .ok, body: "ok\n")
        case .readyz:
            if shuttingDown { return Response(status: .serviceUnavailable, body: "shutting down\n") }
            switch await readiness() {
            case .ready: return Response(status: .ok, body: "ready\n")
            case .notReady(let reason): return Response(status: .serviceUnavailable, body: "\(reason)\n")
            }
        case .metrics:
            var families: [MetricFamily] = []
            for collect in collectors { families += await collect() }
            return Response(status: .ok, contentType: PrometheusText.contentType, body: PrometheusText.render(families))
        }
    }
}

/// One HTTP connection of the operations port. Answers run in a task (readiness and metrics read
/// actors); NIO's pipelining handler holds later requests back until each answer is written.
final class OperationsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoints: OperationsEndpoints
    private var request: HTTPRequestHead?
    private var context: ChannelHandlerContext?

    init(endpoints: OperationsEndpoints) {
        self.endpoints = endpoints
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            let endpoints = self.endpoints
            let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            Task {
                let response = await endpoints.response(method: head.method, uri: head.uri)
                eventLoop.execute { connection.value.write(response, to: head) }
            }
        }
    }

    private func write(_ response: OperationsEndpoints.Response, to request: HTTPRequestHead) {
        guard let context else { return }
        var body = context.channel.allocator.buffer(capacity: response.body.utf8.count)
        body.writeString(response.body)
        var headers = HTTPHeaders([("Content-Type", response.contentType), ("Content-Length", "\(body.readableBytes)")])
        headers.add(contentsOf: response.headers)
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: response.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        if !request.isKeepAlive {
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
