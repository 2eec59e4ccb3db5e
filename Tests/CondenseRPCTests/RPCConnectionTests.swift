import CondenseRPC
import CondenseWire
import Testing

/// Connection-level behaviour, driven with raw frames.
@Suite("RPC connections")
struct RPCConnectionTests {
    static let unaryCall: [Envelope] = [
        .headers(streamID: 1, method: "/test.Echo/Unary"),
        .message(streamID: 1, payload: Array("split".utf8)),
        .halfClose(streamID: 1),
    ]

    @Test func unaryCallCoalescedIntoOneWrite() async throws {
        try await withServer { _, port in
            try await withRawPeer(port: port) { peer in
                try await peer.send(
                    .headers(streamID: 1, method: "/test.Echo/Unary"), .message(streamID: 1, payload: Array("a".utf8)),
                    .halfClose(streamID: 1), .headers(streamID: 3, method: "/test.Echo/Unary"),
                    .message(streamID: 3, payload: Array("b".utf8)), .halfClose(streamID: 3))
                var received: [Envelope] = []
                for _ in 0..<4 { received.append(try #require(await peer.next())) }
                for (id, text) in [(UInt32(1), "a"), (3, "b")] {
                    #expect(received.contains(.message(streamID: id, payload: Array(text.utf8))))
                    #expect(received.contains(.trailers(streamID: id, status: .ok)))
                }
            }
        }
    }

    @Test func unaryCallOneByteAtATime() async throws {
        try await withServer { _, port in
            try await withRawPeer(port: port) { peer in
                for byte in Self.unaryCall.flatMap({ FrameDecoder.frame($0.serializedBytes()) }) {
                    try await peer.send(bytes: [byte])
                }
                #expect(try await peer.next() == .message(streamID: 1, payload: Array("split".utf8)))
                #expect(try await peer.next() == .trailers(streamID: 1, status: .ok))
            }
        }
    }

    @Test func oversizedFrameIsResourceExhaustedThenClose() async throws {
        try await withServer(RPCServer.Configuration(maxFrameSize: 1_024)) { _, port in
            try await withRawPeer(port: port) { peer in
                try await peer.send(bytes: [0x00, 0x10, 0x00, 0x00, 1, 2, 3])  // announces 1 MiB
                let received = try await peer.readUntilClosed()
                #expect(received.count == 2)
                #expect(received.first?.kind == .trailers && received.first?.streamID == 0)
                #expect(received.first?.status?.code == .resourceExhausted)
                #expect(received.last?.kind == .goAway)
            }
            // A real client sees the same status on its call.
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let code = await statusCode {
                _ = try await client.unary(
                    "/test.Echo/Unary", request: TestText(String(repeating: "y", count: 2_000)), responseType: TestText.self)
            }
            #expect(code == .resourceExhausted)
            await client.close()
        }
    }

    @Test func garbageEnvelopeIsInvalidArgumentThenClose() async throws {
        try await withServer { _, port in
            try await withRawPeer(port: port) { peer in
                try await peer.send(bytes: FrameDecoder.frame([0xff, 0xff, 0xff, 0x01]))
                let received = try await peer.readUntilClosed()
                #expect(received.map(\.kind) == [.trailers, .goAway])
                #expect(received.first?.streamID == 0)
                #expect(received.first?.status?.code == .invalidArgument)
            }
            try await withRawPeer(port: port) { peer in
                try await peer.send(bytes: FrameDecoder.frame([0x08, 0x01, 0x10, 0x63]))  // kind 99
                #expect(try await peer.readUntilClosed().first?.status?.code == .invalidArgument)
            }
        }
    }

    @Test func evenOrDecreasingStreamIDIsAConnectionError() async throws {
        try await withServer { _, port in
            for ids in [[UInt32(2)], [5, 3]] {
                try await withRawPeer(port: port) { peer in
                    for id in ids {
                        try await peer.send(
                            .headers(streamID: id, method: "/test.Echo/Unary"), .message(streamID: id, payload: [0x61]),
                            .halfClose(streamID: id))
                    }
                    let received = try await peer.readUntilClosed()
                    let connectionError = try #require(received.first { $0.streamID == 0 && $0.kind == .trailers })
                    #expect(connectionError.status?.code == .invalidArgument, "stream ids \(ids)")
                    #expect(received.last?.kind == .goAway)
                }
            }
        }
    }

    @Test func serverEnforcesDeadlines() async throws {
        let probe = Probe()
        try await withServer(probe: probe) { _, port in
            try await withRawPeer(port: port) { peer in
                try await peer.send(
                    .headers(streamID: 1, method: "/test.Echo/Hang", timeoutMs: 500),
                    .message(streamID: 1, payload: Array("raw".utf8)), .halfClose(streamID: 1))
                let trailers = try #require(await peer.next())
                #expect(trailers.kind == .trailers && trailers.streamID == 1)
                #expect(trailers.status?.code == .deadlineExceeded)
            }
            try await probe.waitUntil("the handler saw cancellation") { probe.contains("cancelled raw") }
        }
    }

    @Test func sendingBeyondTheWindowIsResourceExhausted() async throws {
        let probe = Probe()
        try await withServer(probe: probe) { _, port in
            try await withRawPeer(port: port) { peer in
                try await peer.send(.headers(streamID: 1, method: "/test.Echo/Stall"))
                try await probe.waitUntil("the handler started") { probe.contains("stalling") }
                let messages = (0...FlowControl.initialWindow).map { value in
                    Envelope.message(streamID: 1, payload: TestNumber(UInt64(value)).serializedBytes())
                }
                try await peer.send(bytes: messages.flatMap { FrameDecoder.frame($0.serializedBytes()) })
                let trailers = try #require(await peer.next())
                #expect(trailers.kind == .trailers && trailers.streamID == 1)
                #expect(trailers.status?.code == .resourceExhausted)
                // The connection still serves calls.
                try await peer.send(
                    .headers(streamID: 3, method: "/test.Echo/Unary"), .message(streamID: 3, payload: Array("up".utf8)),
                    .halfClose(streamID: 3))
                #expect(try await peer.next() == .message(streamID: 3, payload: Array("up".utf8)))
            }
        }
    }

    @Test func duplicateMethodsAreRefusedAtStart() async throws {
        let probe = Probe()
        let server = RPCServer(
            configuration: RPCServer.Configuration(), services: [TestService(probe: probe), TestService(probe: probe)],
            logger: quietLogger)
        await #expect(throws: RPCServerError.self) { try await server.start() }
    }

    @Test func pingIsEchoed() async throws {
        try await withServer { _, port in
            try await withRawPeer(port: port) { peer in
                try await peer.send(.ping(payload: [1, 2, 3, 250]))
                #expect(try await peer.next() == .ping(payload: [1, 2, 3, 250], ack: true))
            }
        }
    }

    @Test func silentClientIsDisconnected() async throws {
        try await withServer(RPCServer.Configuration(idleTimeout: .milliseconds(200))) { _, port in
            try await withRawPeer(port: port) { peer in
                let received = try await peer.readUntilClosed()
                #expect(received.map(\.kind) == [.goAway])
            }
        }
    }

    @Test func halfFrameClientIsDisconnected() async throws {
        // Long enough that the half frame surely arrives before the timeout, even on a loaded machine.
        try await withServer(RPCServer.Configuration(idleTimeout: .seconds(2))) { _, port in
            try await withRawPeer(port: port) { peer in
                try await peer.send(bytes: [0, 0, 0, 20, 8, 1])  // 20-byte frame, 2 bytes sent
                let received = try await peer.readUntilClosed()
                #expect(received.map(\.kind) == [.goAway])
            }
        }
    }

    @Test func keepAlivePingsHoldAnIdleClientConnection() async throws {
        try await withServer(RPCServer.Configuration(idleTimeout: .seconds(1))) { _, port in
            let kept = try await RPCClient.connect(
                host: "127.0.0.1", port: port, keepAliveInterval: .milliseconds(200), logger: quietLogger)
            let idle = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            try await Task.sleep(for: .seconds(3))  // several idle timeouts
            #expect(try await kept.unary("/test.Echo/Unary", request: TestText("alive"), responseType: TestText.self).text == "alive")
            let code = await statusCode {
                _ = try await idle.unary("/test.Echo/Unary", request: TestText("gone"), responseType: TestText.self)
            }
            #expect(code == .unavailable)
            await kept.close()
            await idle.close()
        }
    }

    @Test func quietConnectionWithCallInProgressStaysOpen() async throws {
        let probe = Probe()
        try await withServer(RPCServer.Configuration(idleTimeout: .seconds(1)), probe: probe) { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let call = Task {
                try await client.unary("/test.Echo/Gate", request: TestText("quiet"), responseType: TestText.self)
            }
            try await probe.waitUntil("the handler started") { probe.contains("entered quiet") }
            try await Task.sleep(for: .seconds(3))  // several idle periods
            probe.gateOpen.store(true, ordering: .relaxed)
            #expect(try await call.value == TestText("passed quiet"))
            await client.close()
        }
    }

    @Test func goAwayDrainsInFlightCallThenCloses() async throws {
        let probe = Probe()
        let server = RPCServer(
            configuration: RPCServer.Configuration(shutdownGracePeriod: .seconds(30)), services: [TestService(probe: probe)],
            logger: quietLogger)
        let port = try await server.start()
        try await withRawPeer(port: port) { peer in
            try await peer.send(
                .headers(streamID: 1, method: "/test.Echo/Gate"), .message(streamID: 1, payload: Array("g".utf8)),
                .halfClose(streamID: 1))
            try await probe.waitUntil("the handler started") { probe.contains("entered g") }
            let stopping = Task { try await server.stop() }

            let goAway = try #require(await peer.next())
            #expect(goAway.kind == .goAway && goAway.streamID == 1)
            // New streams after GOAWAY are refused; the in-flight one continues.
            try await peer.send(
                .headers(streamID: 3, method: "/test.Echo/Unary"), .message(streamID: 3, payload: Array("late".utf8)),
                .halfClose(streamID: 3))
            let refused = try #require(await peer.next())
            #expect(refused.kind == .trailers && refused.streamID == 3)
            #expect(refused.status?.code == .unavailable)

            probe.gateOpen.store(true, ordering: .relaxed)
            let rest = try await peer.readUntilClosed()
            #expect(rest == [.message(streamID: 1, payload: Array("passed g".utf8)), .trailers(streamID: 1, status: .ok)])
            try await stopping.value
        }
        let client = try? await RPCClient.connect(host: "127.0.0.1", port: port)
        #expect(client == nil)
    }

    @Test func clientSeesGoAwayAsUnavailableForNewCalls() async throws {
        let probe = Probe()
        let server = RPCServer(
            configuration: RPCServer.Configuration(), services: [TestService(probe: probe)], logger: quietLogger)
        let port = try await server.start()
        let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
        let inFlight = Task {
            try await client.unary("/test.Echo/Gate", request: TestText("drain"), responseType: TestText.self)
        }
        try await probe.waitUntil("the handler started") { probe.contains("entered drain") }
        let stopping = Task { try await server.stop() }
        // Once GOAWAY arrived, new calls fail fast with UNAVAILABLE.
        var lateCode: StatusCode?
        for _ in 0..<2_000 where lateCode == nil {
            lateCode = await statusCode {
                _ = try await client.unary("/test.Echo/Unary", request: TestText("late"), responseType: TestText.self)
            }
            if lateCode == nil { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(lateCode == .unavailable)
        probe.gateOpen.store(true, ordering: .relaxed)
        #expect(try await inFlight.value == TestText("passed drain"))
        try await stopping.value
        await client.close()
    }
}
