import CondenseRPC
import CondenseWire
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A UTF-8 string message; invalid UTF-8 is undecodable.
struct TestText: WireMessage, Equatable {
    var text: String
    init(_ text: String) { self.text = text }
    init(serializedBytes bytes: some Collection<UInt8>) throws(WireError) {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .invalidField(message: "test.Text", field: "text", reason: "invalid UTF-8")
        }
        self.text = text
    }
    func serializedBytes() -> [UInt8] { Array(text.utf8) }
}

/// A 64-bit number, 8 bytes big-endian; any other length is undecodable.
struct TestNumber: WireMessage, Equatable {
    var value: UInt64
    init(_ value: UInt64) { self.value = value }
    init(serializedBytes bytes: some Collection<UInt8>) throws(WireError) {
        guard bytes.count == 8 else { throw .undecodable(message: "test.Number") }
        value = bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }
    func serializedBytes() -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
}

/// Arbitrary bytes, to send payloads a method cannot decode.
struct RawBytes: WireMessage {
    var bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    init(serializedBytes bytes: some Collection<UInt8>) { self.bytes = Array(bytes) }
    func serializedBytes() -> [UInt8] { bytes }
}

enum TestFailure: Error { case boom }

/// What test handlers did, observed from the test.
final class Probe: Sendable {
    private let events = Mutex<[String]>([])
    let writesCompleted = Atomic<Int>(0)
    let gateOpen = Atomic<Bool>(false)

    func record(_ event: String) { events.withLock { $0.append(event) } }
    func contains(_ event: String) -> Bool { events.withLock { $0.contains(event) } }

    /// Polls until `condition` holds; fails the test if it never does.
    func waitUntil(
        _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ condition: () -> Bool
    ) async throws {
        // A wall-clock bound, not a poll count: under a loaded CI machine sleeps overrun.
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("timed out waiting until \(what)", sourceLocation: sourceLocation)
        throw TestFailure.boom
    }
}

struct TestService: RPCService {
    let probe: Probe

    func register(in registry: inout RPCMethodRegistry) {
        let probe = self.probe
        registry.unary("/test.Echo/Unary") { (request: TestText, _: RPCContext) in request }
        registry.unary("/test.Echo/Triple") { (request: TestText, _: RPCContext) in
            TestText(String(repeating: request.text, count: 3))
        }
        registry.unary("/test.Echo/Metadata") { (request: TestText, context: RPCContext) in
            TestText(context.metadata.value(forKey: request.text) ?? "<absent>")
        }
        registry.unary("/test.Echo/Fail") { (_: TestText, _: RPCContext) -> TestText in
            throw RPCError(code: .notFound, message: "nothing here", retryAfterMs: 7)
        }
        registry.unary("/test.Echo/Crash") { (_: TestText, _: RPCContext) -> TestText in
            throw TestFailure.boom
        }
        registry.unary("/test.Echo/Hang") { (request: TestText, context: RPCContext) -> TestText in
            probe.record("started \(request.text)")
            do {
                try await Task.sleep(for: .seconds(3_600))
            } catch {
                probe.record("cancelled \(request.text)")
                throw error
            }
            return request
        }
        registry.unary("/test.Echo/Gate") { (request: TestText, _: RPCContext) -> TestText in
            probe.record("entered \(request.text)")
            while !probe.gateOpen.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(2)) }
            return TestText("passed \(request.text)")
        }
        registry.serverStreaming("/test.Echo/Count") {
            (request: TestNumber, writer: RPCMessageWriter<TestNumber>, _: RPCContext) in
            for value in 0..<request.value {
                try await writer.write(TestNumber(value))
                probe.writesCompleted.add(1, ordering: .relaxed)
            }
            probe.record("count finished")
        }
        registry.clientStreaming("/test.Echo/Sum") { (requests: RPCMessageStream<TestNumber>, _: RPCContext) in
            var sum: UInt64 = 0
            for try await number in requests { sum += number.value }
            return TestNumber(sum)
        }
        registry.clientStreaming("/test.Echo/Stall") { (_: RPCMessageStream<TestNumber>, _: RPCContext) -> TestNumber in
            probe.record("stalling")
            try await Task.sleep(for: .seconds(3_600))  // never reads its requests
            return TestNumber(0)
        }
        registry.bidirectional("/test.Echo/Upper") {
            (requests: RPCMessageStream<TestText>, writer: RPCMessageWriter<TestText>, _: RPCContext) in
            for try await request in requests { try await writer.write(TestText(request.text.uppercased())) }
        }
    }
}

/// Test output shows warnings and errors only.
let quietLogger: Logger = {
    var logger = Logger(label: "condense.rpc.test")
    logger.logLevel = .warning
    return logger
}()

/// Runs `body` against a started server on 127.0.0.1 (free port), then stops it.
func withServer(
    _ configuration: RPCServer.Configuration = RPCServer.Configuration(shutdownGracePeriod: .seconds(2)),
    probe: Probe = Probe(),
    _ body: (RPCServer, Int) async throws -> Void
) async throws {
    let server = RPCServer(configuration: configuration, services: [TestService(probe: probe)], logger: quietLogger)
    let port = try await server.start()
    do {
        try await body(server, port)
    } catch {
        try await server.stop()
        throw error
    }
    try await server.stop()
}

/// The status code an RPC error carried, or `nil` if `body` succeeded or threw something else.
func statusCode(of body: () async throws -> Void) async -> StatusCode? {
    do {
        try await body()
        return nil
    } catch let error as RPCError {
        return error.code
    } catch {
        return nil
    }
}

/// A hand-driven TCP peer speaking raw frames, for the tests of malformed and partial input.
final class RawPeer {
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var decoder = FrameDecoder()

    init(
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) {
        self.inbound = inbound
        self.outbound = outbound
    }

    func send(bytes: [UInt8]) async throws {
        try await outbound.write(ByteBuffer(bytes: bytes))
    }

    func send(_ envelopes: Envelope...) async throws {
        try await send(bytes: envelopes.flatMap { FrameDecoder.frame($0.serializedBytes()) })
    }

    /// The next envelope from the server; `nil` once the connection is closed.
    func next() async throws -> Envelope? {
        while true {
            if let body = try decoder.nextFrame() { return try Envelope(serializedBytes: body) }
            let chunk: ByteBuffer?
            do {
                chunk = try await inbound.next()
            } catch {
                return nil  // reset by the server counts as closed
            }
            guard let chunk else { return nil }
            decoder.append(chunk.readableBytesView)
        }
    }

    /// Every envelope until the server closes the connection.
    func readUntilClosed() async throws -> [Envelope] {
        var envelopes: [Envelope] = []
        while let envelope = try await next() { envelopes.append(envelope) }
        return envelopes
    }
}

func withRawPeer<Result: Sendable>(port: Int, _ body: (RawPeer) async throws -> Result) async throws -> Result {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    return try await channel.executeThenClose { inbound, outbound in
        try await body(RawPeer(inbound: inbound.makeAsyncIterator(), outbound: outbound))
    }
}
