import CondenseWire
import Logging
import NIOCore
import NIOExtras
import NIOPosix

/// Errors starting or stopping an `RPCServer`.
public enum RPCServerError: Error, Equatable, Sendable, CustomStringConvertible {
    case alreadyStarted
    /// Two handlers were registered for these method paths.
    case duplicateMethods([String])

    public var description: String {
        switch self {
        case .alreadyStarted: "the RPC server is already started"
        case .duplicateMethods(let methods): "methods registered more than once: \(methods.joined(separator: ", "))"
        }
    }
}

/// Serves `RPCService`s over the Condense framing protocol (see Protos/README.md).
public actor RPCServer {
    public struct Configuration: Sendable {
        public var host: String
        /// 0 picks a free port; `start()` returns the bound one.
        public var port: Int
        /// Largest accepted frame body (serialized envelope), in bytes.
        public var maxFrameSize: Int
        /// When set, every call must carry metadata `authorization: Bearer <token>`.
        public var authToken: String?
        /// A connection with no complete frame for this long is closed when it has no calls in
        /// progress or holds a partial frame (silent or stalled clients).
        public var idleTimeout: Duration
        /// On `stop()`, how long in-flight calls may run before they are cut off with UNAVAILABLE.
        public var shutdownGracePeriod: Duration
        /// Calls one connection may have open at once; more are refused with RESOURCE_EXHAUSTED.
        public var maxConcurrentStreams: Int
        /// When set, connections must speak TLS; plaintext clients are refused with UNAVAILABLE.
        /// A client stalling in the handshake is closed by `idleTimeout`.
        public var tls: RPCServerTLS?

        public init(
            host: String = "127.0.0.1", port: Int = 0, maxFrameSize: Int = FrameDecoder.defaultMaximumFrameLength,
            authToken: String? = nil, idleTimeout: Duration = .seconds(60),
            shutdownGracePeriod: Duration = .seconds(30), maxConcurrentStreams: Int = 1024, tls: RPCServerTLS? = nil
        ) {
            self.host = host
            self.port = port
            self.maxFrameSize = maxFrameSize
            self.authToken = authToken
            self.idleTimeout = idleTimeout
            self.shutdownGracePeriod = shutdownGracePeriod
            self.maxConcurrentStreams = maxConcurrentStreams
            self.tls = tls
        }
    }

    public let configuration: Configuration
    private let registry: RPCMethodRegistry
    private let metrics: RPCServerMetrics?
    private let logger: Logger
    private let group: any EventLoopGroup
    private var channel: (any Channel)?
    private var quiescing: ServerQuiescingHelper?

    /// `metrics`, when given, records every call (see `RPCServerMetrics`); without it calls cost nothing extra.
    public init(
        configuration: Configuration, services: [any RPCService], metrics: RPCServerMetrics? = nil,
        logger: Logger = Logger(label: "condense.rpc.server"),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        var registry = RPCMethodRegistry()
        for service in services { service.register(in: &registry) }
        self.configuration = configuration
        self.registry = registry
        self.metrics = metrics
        self.logger = logger
        self.group = group
    }

    /// The bound port while running.
    public var port: Int? { channel?.localAddress?.port }

    /// Binds and starts accepting connections; returns the bound port.
    @discardableResult
    public func start() async throws -> Int {
        guard channel == nil else { throw RPCServerError.alreadyStarted }
        guard registry.duplicateMethods.isEmpty else {
            throw RPCServerError.duplicateMethods(registry.duplicateMethods)
        }
        let quiescing = ServerQuiescingHelper(group: group)
        let settings = ServerConnectionSettings(
            maxFrameSize: configuration.maxFrameSize, authToken: configuration.authToken,
            idleTimeout: TimeAmount(configuration.idleTimeout),
            shutdownGracePeriod: TimeAmount(configuration.shutdownGracePeriod),
            maxConcurrentStreams: configuration.maxConcurrentStreams)
        let methods = registry.methods
        let metrics = self.metrics
        let logger = self.logger
        let tls = configuration.tls
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            // TCP level: at socket level the same number is SO_DEBUG, which non-root users may not set.
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(tls.makeConnectionGate(logger: logger)) }
                    try channel.pipeline.syncOperations.addHandler(
                        ServerConnectionHandler(
                            settings: settings, methods: methods, calls: metrics?.table(on: channel.eventLoop),
                            logger: logger))
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        self.channel = channel
        self.quiescing = quiescing
        let port = channel.localAddress?.port ?? configuration.port
        logger.info(
            "RPC server listening",
            metadata: ["host": "\(configuration.host)", "port": "\(port)", "tls": "\(tls != nil)", "methods": "\(registry.registeredMethods)"])
        return port
    }

    /// Graceful shutdown: stops accepting connections, sends GOAWAY on every connection, lets
    /// in-flight calls finish (up to `shutdownGracePeriod`), then closes. Returns when all
    /// connections are closed.
    public func stop() async throws {
        guard let quiescing else { return }
        self.quiescing = nil
        let closed = group.next().makePromise(of: Void.self)
        quiescing.initiateShutdown(promise: closed)
        try await closed.futureResult.get()
        channel = nil
        logger.info("RPC server stopped")
    }
}
