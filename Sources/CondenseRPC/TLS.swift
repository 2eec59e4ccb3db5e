import CondenseWire
import Foundation
import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// Why TLS settings could not be loaded.
public enum RPCTLSError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `path` (the `role` file: "certificate", "private key", "CA certificate") cannot be read.
    case unreadableFile(role: String, path: String)
    /// `path` holds no usable PEM data for its role.
    case invalidFile(role: String, path: String, reason: String)
    /// The private key does not belong to the certificate.
    case keyDoesNotMatchCertificate(certificatePath: String, keyPath: String)
    /// A server name clients check the certificate against must be a DNS name.
    case invalidServerName(String)
    /// BoringSSL refused the settings.
    case unusable(String)

    public var description: String {
        switch self {
        case .unreadableFile(let role, let path): "cannot read the TLS \(role) file \(path)"
        case .invalidFile(let role, let path, let reason): "the TLS \(role) file \(path) is not usable: \(reason)"
        case .keyDoesNotMatchCertificate(let certificatePath, let keyPath):
            "the TLS private key \(keyPath) does not belong to the certificate \(certificatePath)"
        case .invalidServerName(let name): "'\(name)' is not a DNS name to check the server's certificate against"
        case .unusable(let reason): "unusable TLS settings: \(reason)"
        }
    }
}

/// TLS on an `RPCServer`'s port: its certificate chain and private key. Clients must then speak TLS;
/// a plaintext client is told so (UNAVAILABLE) and disconnected.
public struct RPCServerTLS: Sendable {
    let context: NIOSSLContext
    /// Client settings that accept exactly this server's certificate at any address, for clients in the
    /// server's own process (`condense serve` dials itself over loopback, where no certificate name fits).
    public let loopbackClientTLS: RPCClientTLS

    /// `certificateChainFile`: PEM, the server's certificate first, then any intermediates.
    /// `privateKeyFile`: PEM, the certificate's (unencrypted) key.
    public init(certificateChainFile: String, privateKeyFile: String) throws(RPCTLSError) {
        let chain = try loadCertificates(certificateChainFile, role: "certificate")
        let keyBytes = try readPEMFile(privateKeyFile, role: "private key")
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(bytes: keyBytes, format: .pem) } catch {
            throw .invalidFile(role: "private key", path: privateKeyFile, reason: "no PEM private key (\(error))")
        }
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch NIOSSLError.failedToLoadPrivateKey {
            // BoringSSL refuses a key that does not match the leaf certificate, which is already set.
            throw .keyDoesNotMatchCertificate(certificatePath: certificateChainFile, keyPath: privateKeyFile)
        } catch {
            throw .unusable("\(error)")
        }
        var loopback = TLSConfiguration.makeClientConfiguration()
        // The pin replaces the chain and name checks: the certificate must be this one.
        loopback.certificateVerification = .noHostnameVerification
        do {
            loopbackClientTLS = RPCClientTLS(
                context: try NIOSSLContext(configuration: loopback), serverName: nil, pinnedCertificate: chain[0])
        } catch {
            throw .unusable("\(error)")
        }
    }

    /// The first handler of each accepted connection: hands TLS to NIOSSL, turns plaintext away.
    func makeConnectionGate(logger: Logger) -> TLSServerGate {
        TLSServerGate(context: context, logger: logger)
    }
}

/// TLS for an `RPCClient`: whom to trust and which name the server's certificate must carry.
public struct RPCClientTLS: Sendable {
    let context: NIOSSLContext
    /// The name checked against the certificate and sent as SNI; nil = the dialled host.
    let serverName: String?
    /// When set, the server must present exactly this certificate (see `RPCServerTLS.loopbackClientTLS`).
    let pinnedCertificate: NIOSSLCertificate?
    /// How long connecting plus the TLS handshake may take before the connection attempt fails.
    public var handshakeTimeout: Duration = .seconds(10)

    /// `trustedCertificatesFile`: PEM certificates (a private CA, or a self-signed server certificate) to
    /// trust instead of the system's trust roots. `serverName`: the name the certificate must carry when it
    /// is not the address dialled (an IP address, a load balancer).
    public init(trustedCertificatesFile: String? = nil, serverName: String? = nil) throws(RPCTLSError) {
        if let serverName, serverName.isEmpty || isIPAddress(serverName) {
            throw .invalidServerName(serverName)
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let trustedCertificatesFile {
            configuration.trustRoots = .certificates(try loadCertificates(trustedCertificatesFile, role: "CA certificate"))
        }
        do { context = try NIOSSLContext(configuration: configuration) } catch { throw .unusable("\(error)") }
        self.serverName = serverName
        pinnedCertificate = nil
    }

    init(context: NIOSSLContext, serverName: String?, pinnedCertificate: NIOSSLCertificate?) {
        self.context = context
        self.serverName = serverName
        self.pinnedCertificate = pinnedCertificate
    }

    /// Adds the TLS handlers to a new connection to `host`:`port`; the future succeeds once the handshake
    /// completed and fails with UNAVAILABLE naming TLS otherwise (untrusted certificate, plaintext server,
    /// timeout). Call on the channel's event loop.
    func addHandlers(to channel: any Channel, host: String, port: Int) throws -> EventLoopFuture<Void> {
        // An IP address cannot go in SNI; NIOSSL then checks the certificate against the address dialled.
        let expectedName = serverName ?? (isIPAddress(host) ? nil : host)
        let handler: NIOSSLClientHandler
        if let pinnedCertificate {
            handler = try NIOSSLClientHandler(
                context: context, serverHostname: expectedName,
                customVerificationCallback: { presented, verdict in
                    verdict.succeed(presented.first == pinnedCertificate ? .certificateVerified : .failed)
                }, configuration: .init())
        } else {
            handler = try NIOSSLClientHandler(context: context, serverHostname: expectedName)
        }
        let handshake = channel.eventLoop.makePromise(of: Void.self)
        let observer = TLSHandshakeObserver(
            peer: "\(host):\(port)", expectedName: expectedName ?? host, pinned: pinnedCertificate != nil,
            timeout: TimeAmount(handshakeTimeout), handshake: handshake)
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(PlaintextReplyDetector(observer: observer))
        try pipeline.addHandler(handler)
        try pipeline.addHandler(observer)
        return handshake.futureResult
    }
}

// MARK: Files

private func readPEMFile(_ path: String, role: String) throws(RPCTLSError) -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else { throw .unreadableFile(role: role, path: path) }
    return Array(data)
}

/// The certificates in a PEM file, at least one.
private func loadCertificates(_ path: String, role: String) throws(RPCTLSError) -> [NIOSSLCertificate] {
    let bytes = try readPEMFile(path, role: role)
    let certificates: [NIOSSLCertificate]
    do { certificates = try NIOSSLCertificate.fromPEMBytes(bytes) } catch {
        throw .invalidFile(role: role, path: path, reason: "not PEM certificates (\(error))")
    }
    guard !certificates.isEmpty else { throw .invalidFile(role: role, path: path, reason: "no PEM certificate in it") }
    return certificates
}

private func isIPAddress(_ host: String) -> Bool {
    (try? SocketAddress(ipAddress: host, port: 0)) != nil
}

// MARK: Server side

/// First handler of a TLS server connection. A TLS client's first byte is a handshake record (22); on it
/// the gate puts NIOSSL in its place. Anything else is a plaintext client: it gets a connection-level
/// UNAVAILABLE TRAILERS it can read, naming TLS, instead of a hang or an opaque reset.
final class TLSServerGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private static let handshakeRecordType: UInt8 = 22
    private let context: NIOSSLContext
    private let logger: Logger
    /// nil until the first byte arrived; then whether the client speaks TLS.
    private var clientSpeaksTLS: Bool?

    init(context: NIOSSLContext, logger: Logger) {
        self.context = context
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch clientSpeaksTLS {
        case true?: return context.fireChannelRead(data)
        case false?: return  // refused; the connection is closing
        case nil: break
        }
        let bytes = unwrapInboundIn(data)
        guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return }
        clientSpeaksTLS = first == Self.handshakeRecordType
        guard clientSpeaksTLS == true else { return refusePlaintext(context: context) }
        do {
            try context.pipeline.syncOperations.addHandler(
                NIOSSLServerHandler(context: self.context), position: .after(self))
        } catch {
            context.fireErrorCaught(error)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func refusePlaintext(context: ChannelHandlerContext) {
        logger.debug(
            "refusing a plaintext client on the TLS port",
            metadata: ["rpc.peer": "\(context.channel.remoteAddress?.description ?? "unknown")"])
        let status = RPCStatus(code: .unavailable, message: "this server requires TLS; connect with TLS enabled")
        // The connection handler above never saw a frame: this TRAILERS is all the client gets before the close.
        context.writeFrame(.trailers(streamID: 0, status: status))
        let channel = context.channel
        let flushed = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(channel.allocator.buffer(capacity: 0)), promise: flushed)
        flushed.futureResult.whenComplete { _ in channel.close(promise: nil) }
    }
}

// MARK: Client side

/// Sits after NIOSSL on a client connection and turns the handshake's outcome into a future:
/// success on `handshakeCompleted`, UNAVAILABLE naming TLS on an error, on the peer closing, or on timeout.
final class TLSHandshakeObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let peer: String
    private let expectedName: String
    private let pinned: Bool
    private let timeout: TimeAmount
    private var handshake: EventLoopPromise<Void>?
    private var timer: Scheduled<Void>?
    /// Set by `PlaintextReplyDetector` when the server's first bytes were not a TLS record.
    var peerAnsweredPlaintext = false

    init(peer: String, expectedName: String, pinned: Bool, timeout: TimeAmount, handshake: EventLoopPromise<Void>) {
        self.peer = peer
        self.expectedName = expectedName
        self.pinned = pinned
        self.timeout = timeout
        self.handshake = handshake
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let observer = NIOLoopBound(self, eventLoop: context.eventLoop)
        let channel = context.channel
        let seconds = Double(timeout.nanoseconds) / 1e9
        timer = context.eventLoop.scheduleTask(in: timeout) {
            observer.value.fail("no TLS handshake within \(seconds) s (is the server serving TLS?)")
            channel.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            timer?.cancel()
            handshake?.succeed()
            handshake = nil
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(explain(error))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(
            peerAnsweredPlaintext
                ? plaintextPeer : "the server closed the connection during the TLS handshake")
        context.fireChannelInactive()
    }

    private var plaintextPeer: String { "the server does not speak TLS (it answered in plaintext); connect without TLS" }

    private func explain(_ error: any Error) -> String {
        if peerAnsweredPlaintext { return plaintextPeer }
        if let failure = error as? NIOSSLExtraError, failure == .failedToValidateHostname {
            return "the server's TLS certificate is not valid for '\(expectedName)'"
        }
        let text = "\(error)"
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return pinned
                ? "the server's TLS certificate is not trusted: it is not the server's own certificate"
                : "the server's TLS certificate is not trusted: no trusted CA signed it"
        }
        return "TLS handshake failed: \(text)"
    }

    private func fail(_ reason: String) {
        timer?.cancel()
        handshake?.fail(RPCError(code: .unavailable, message: "TLS connection to \(peer) failed: \(reason)"))
        handshake = nil
    }
}

/// Sits before NIOSSL on a client connection: a TLS server's first bytes are a TLS record (content types
/// 20-23); anything else means the server speaks the plaintext protocol, which the observer reports.
final class PlaintextReplyDetector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let observer: TLSHandshakeObserver
    private var checked = false

    init(observer: TLSHandshakeObserver) {
        self.observer = observer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !checked {
            let bytes = unwrapInboundIn(data)
            if let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) {
                checked = true
                observer.peerAnsweredPlaintext = !(20...23).contains(first)
            }
        }
        context.fireChannelRead(data)
    }
}
