import CondenseRPC
import CondenseWire
import Testing

@Suite("RPC calls")
struct RPCCallTests {
    @Test func unaryEchoesTheRequest() async throws {
        try await withServer { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let response = try await client.unary("/test.Echo/Unary", request: TestText("héllo"), responseType: TestText.self)
            #expect(response == TestText("héllo"))
            let metadata = try await client.unary(
                "/test.Echo/Metadata", request: TestText("x-tenant"), responseType: TestText.self,
                options: CallOptions(metadata: [MetadataEntry(key: "x-tenant", value: "acme")]))
            #expect(metadata == TestText("acme"))
            await client.close()
        }
    }

    @Test func allFourCallKinds() async throws {
        try await withServer { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let counted = try await client.serverStreaming(
                "/test.Echo/Count", request: TestNumber(300), responseType: TestNumber.self
            ) { responses in
                var values: [UInt64] = []
                for try await number in responses { values.append(number.value) }
                return values
            }
            #expect(counted == Array(0..<300))

            let sum = try await client.clientStreaming(
                "/test.Echo/Sum", requestType: TestNumber.self, responseType: TestNumber.self
            ) { writer in
                for value in 1...200 { try await writer.write(TestNumber(UInt64(value))) }
            }
            #expect(sum == TestNumber(20_100))

            let upper = try await client.bidirectional(
                "/test.Echo/Upper", requestType: TestText.self, responseType: TestText.self,
                sendRequests: { writer in
                    for word in ["a", "bc", "déf"] { try await writer.write(TestText(word)) }
                },
                handleResponses: { responses in
                    var texts: [String] = []
                    for try await response in responses { texts.append(response.text) }
                    return texts
                })
            #expect(upper == ["A", "BC", "DÉF"])
            await client.close()
        }
    }

    /// Returning early from the response handler ends the call even while the request writer is
    /// parked on flow control (the server stopped reading because nobody reads its responses).
    @Test func bidirectionalEarlyReturnEndsTheCall() async throws {
        let probe = Probe()
        try await withServer(probe: probe) { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let firstThree = try await client.bidirectional(
                "/test.Echo/Upper", requestType: TestText.self, responseType: TestText.self,
                sendRequests: { writer in
                    for index in 0..<10_000 { try await writer.write(TestText("m\(index)")) }
                },
                handleResponses: { responses in
                    var texts: [String] = []
                    for try await response in responses {
                        texts.append(response.text)
                        if texts.count == 3 { break }
                    }
                    return texts
                })
            #expect(firstThree == ["M0", "M1", "M2"])
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("next"), responseType: TestText.self).text == "next")
            await client.close()
        }
    }

    @Test func handlerErrorsBecomeStatuses() async throws {
        try await withServer { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            do {
                _ = try await client.unary("/test.Echo/Fail", request: TestText("x"), responseType: TestText.self)
                Issue.record("expected NOT_FOUND")
            } catch let error as RPCError {
                #expect(error == RPCError(code: .notFound, message: "nothing here", retryAfterMs: 7))
            }
            do {
                _ = try await client.unary("/test.Echo/Crash", request: TestText("x"), responseType: TestText.self)
                Issue.record("expected INTERNAL")
            } catch let error as RPCError {
                #expect(error.code == .internal)
                #expect(error.message.contains("boom"))
            }
            await client.close()
        }
    }

    @Test func unknownMethodIsUnimplemented() async throws {
        try await withServer { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let code = await statusCode {
                _ = try await client.unary("/test.Echo/Nope", request: TestText("x"), responseType: TestText.self)
            }
            #expect(code == .unimplemented)
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("ok"), responseType: TestText.self).text == "ok")
            await client.close()
        }
    }

    @Test func badPayloadIsInvalidArgumentAndConnectionStaysUp() async throws {
        try await withServer { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let code = await statusCode {
                _ = try await client.unary("/test.Echo/Unary", request: RawBytes([0xff, 0xfe]), responseType: TestText.self)
            }
            #expect(code == .invalidArgument)
            let streamed = await statusCode {
                _ = try await client.clientStreaming(
                    "/test.Echo/Sum", requestType: RawBytes.self, responseType: TestNumber.self
                ) { writer in try await writer.write(RawBytes([1, 2, 3])) }
            }
            #expect(streamed == .invalidArgument)
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("next"), responseType: TestText.self).text == "next")
            await client.close()
        }
    }

    @Test func authentication() async throws {
        try await withServer(RPCServer.Configuration(authToken: "s3cret")) { _, port in
            for token in [nil, "wrong"] as [String?] {
                let client = try await RPCClient.connect(host: "127.0.0.1", port: port, authToken: token)
                let code = await statusCode {
                    _ = try await client.unary("/test.Echo/Unary", request: TestText("x"), responseType: TestText.self)
                }
                #expect(code == .unauthenticated, "token \(token ?? "none")")
                await client.close()
            }
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, authToken: "s3cret")
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("in"), responseType: TestText.self).text == "in")
            await client.close()
        }
    }

    @Test func deadlineExceededCancelsTheHandler() async throws {
        let probe = Probe()
        try await withServer(probe: probe) { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let code = await statusCode {
                _ = try await client.unary(
                    "/test.Echo/Hang", request: TestText("d"), responseType: TestText.self,
                    options: CallOptions(timeout: .milliseconds(500)))
            }
            #expect(code == .deadlineExceeded)
            try await probe.waitUntil("the handler saw cancellation") { probe.contains("cancelled d") }
            await client.close()
        }
    }

    @Test func clientCancellationStopsTheServerHandler() async throws {
        let probe = Probe()
        try await withServer(probe: probe) { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let call = Task {
                try await client.unary("/test.Echo/Hang", request: TestText("c"), responseType: TestText.self)
            }
            try await probe.waitUntil("the handler started") { probe.contains("started c") }
            call.cancel()
            let code = await statusCode { _ = try await call.value }
            #expect(code == .cancelled)
            try await probe.waitUntil("the handler saw cancellation") { probe.contains("cancelled c") }
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("after"), responseType: TestText.self).text == "after")
            await client.close()
        }
    }

    @Test func manyConcurrentCallsOnOneConnection() async throws {
        try await withServer { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let mismatches = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        let text = "call-\(index)"
                        if index % 2 == 0 {
                            return try await client.unary("/test.Echo/Unary", request: TestText(text), responseType: TestText.self).text == text
                        }
                        let values = try await client.serverStreaming(
                            "/test.Echo/Count", request: TestNumber(UInt64(index)), responseType: TestNumber.self
                        ) { responses in
                            var values: [UInt64] = []
                            for try await number in responses { values.append(number.value) }
                            return values
                        }
                        return values == Array(0..<UInt64(index))
                    }
                }
                var mismatches = 0
                for try await matched in group where !matched { mismatches += 1 }
                return mismatches
            }
            #expect(mismatches == 0)
            await client.close()
        }
    }

    @Test func manyConnections() async throws {
        try await withServer { _, port in
            let results = try await withThrowingTaskGroup(of: [String].self) { group in
                for connection in 0..<20 {
                    group.addTask {
                        let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
                        var texts: [String] = []
                        for call in 0..<10 {
                            texts.append(
                                try await client.unary(
                                    "/test.Echo/Unary", request: TestText("\(connection)/\(call)"), responseType: TestText.self
                                ).text)
                        }
                        await client.close()
                        return texts
                    }
                }
                var all: [String] = []
                for try await texts in group { all += texts }
                return all
            }
            #expect(Set(results) == Set((0..<20).flatMap { c in (0..<10).map { "\(c)/\($0)" } }))
        }
    }

    /// A client that does not read bounds how far the server handler gets: it stops at the
    /// flow-control window (64 messages), not at 10,000, and resumes when the client reads.
    @Test func serverStreamingBackpressure() async throws {
        let probe = Probe()
        try await withServer(probe: probe) { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let total = try await client.serverStreaming(
                "/test.Echo/Count", request: TestNumber(10_000), responseType: TestNumber.self
            ) { responses in
                try await probe.waitUntil("the window is used up") {
                    probe.writesCompleted.load(ordering: .relaxed) >= FlowControl.initialWindow
                }
                // Give an unbounded writer every chance to run ahead.
                try await Task.sleep(for: .milliseconds(300))
                #expect(probe.writesCompleted.load(ordering: .relaxed) == FlowControl.initialWindow)
                #expect(!probe.contains("count finished"))
                var count: UInt64 = 0
                for try await number in responses {
                    #expect(number.value == count)
                    count += 1
                }
                return count
            }
            #expect(total == 10_000)
            #expect(probe.writesCompleted.load(ordering: .relaxed) == 10_000)
            await client.close()
        }
    }

    @Test func clientRejectsOversizedRequestLocally() async throws {
        try await withServer { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, maxFrameSize: 1_000)
            let code = await statusCode {
                _ = try await client.unary(
                    "/test.Echo/Unary", request: TestText(String(repeating: "x", count: 2_000)), responseType: TestText.self)
            }
            #expect(code == .resourceExhausted)
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("small"), responseType: TestText.self).text == "small")
            await client.close()
        }
    }

    @Test func oversizedResponseIsResourceExhausted() async throws {
        try await withServer(RPCServer.Configuration(maxFrameSize: 1_024)) { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let code = await statusCode {
                _ = try await client.unary(
                    "/test.Echo/Triple", request: TestText(String(repeating: "z", count: 500)), responseType: TestText.self)
            }
            #expect(code == .resourceExhausted)
            #expect(try await client.unary("/test.Echo/Triple", request: TestText("ab"), responseType: TestText.self).text == "ababab")
            await client.close()
        }
    }

    @Test func concurrentCallLimitIsResourceExhausted() async throws {
        let probe = Probe()
        try await withServer(RPCServer.Configuration(maxConcurrentStreams: 2), probe: probe) { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let hanging = (0..<2).map { index in
                Task { try await client.unary("/test.Echo/Hang", request: TestText("h\(index)"), responseType: TestText.self) }
            }
            try await probe.waitUntil("both handlers started") { probe.contains("started h0") && probe.contains("started h1") }
            let code = await statusCode {
                _ = try await client.unary("/test.Echo/Unary", request: TestText("third"), responseType: TestText.self)
            }
            #expect(code == .resourceExhausted)
            for task in hanging { task.cancel() }
            for task in hanging { _ = await statusCode { _ = try await task.value } }
            try await probe.waitUntil("both handlers were cancelled") {
                probe.contains("cancelled h0") && probe.contains("cancelled h1")
            }
            #expect(try await client.unary("/test.Echo/Unary", request: TestText("fourth"), responseType: TestText.self).text == "fourth")
            await client.close()
        }
    }

    @Test func pingRoundTrips() async throws {
        try await withServer { _, port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let roundTrip = try await client.ping()
            #expect(roundTrip > .zero)
            await client.close()
            let code = await statusCode { _ = try await client.ping() }
            #expect(code == .unavailable)
        }
    }
}
