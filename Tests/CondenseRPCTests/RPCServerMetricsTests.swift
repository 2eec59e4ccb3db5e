import CondenseRPC
import CondenseWire
import Testing

@Suite("RPC server metrics and the Prometheus text format")
struct RPCServerMetricsTests {
    /// Runs `body` against a server that records into `metrics`.
    func withMeteredServer(
        _ metrics: RPCServerMetrics, probe: Probe = Probe(), _ body: (Int) async throws -> Void
    ) async throws {
        let server = RPCServer(
            configuration: .init(shutdownGracePeriod: .seconds(2)), services: [TestService(probe: probe)], metrics: metrics,
            logger: quietLogger)
        let port = try await server.start()
        do {
            try await body(port)
        } catch {
            try await server.stop()
            throw error
        }
        try await server.stop()
    }

    @Test func callsAreCountedByMethodAndStatusCode() async throws {
        let metrics = RPCServerMetrics()
        try await withMeteredServer(metrics) { port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            for _ in 0..<3 {
                let _: TestText = try await client.unary("/test.Echo/Unary", request: TestText("hi"))
            }
            #expect(await statusCode { let _: TestText = try await client.unary("/test.Echo/Fail", request: TestText("x")) } == .notFound)
            #expect(await statusCode { let _: TestText = try await client.unary("/test.Echo/Crash", request: TestText("x")) } == .internal)
            #expect(await statusCode { let _: TestText = try await client.unary("/no.Such/Method", request: TestText("x")) } == .unimplemented)
            await client.close()

            let counts = await metrics.snapshot()
            #expect(counts.count("/test.Echo/Unary", .ok) == 3)
            #expect(counts.count("/test.Echo/Fail", .notFound) == 1)
            #expect(counts.count("/test.Echo/Crash", .internal) == 1)
            // A path nobody registered is not a label value of its own (clients choose those freely).
            #expect(counts.count(RPCServerMetrics.unknownMethod, .unimplemented) == 1)
            #expect(counts.methods["/no.Such/Method"] == nil)
            // Latency: one observation per call that ran a handler, none for the refused call.
            #expect(counts.methods["/test.Echo/Unary"]?.latency.count == 3)
            #expect(counts.methods[RPCServerMetrics.unknownMethod]?.latency.count == 0)
            #expect(counts.inFlight == 0)
        }
    }

    @Test func inFlightCountsRunningHandlersAndCancelledCallsEndAsCancelled() async throws {
        let metrics = RPCServerMetrics()
        let probe = Probe()
        try await withMeteredServer(metrics, probe: probe) { port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let gated = Task { let _: TestText = try await client.unary("/test.Echo/Gate", request: TestText("g")) }
            let hanging = Task { let _: TestText = try await client.unary("/test.Echo/Hang", request: TestText("h")) }
            try await probe.waitUntil("both handlers run") { probe.contains("entered g") && probe.contains("started h") }
            #expect(await metrics.snapshot().inFlight == 2)

            probe.gateOpen.store(true, ordering: .relaxed)
            try await gated.value
            hanging.cancel()
            _ = await hanging.result
            try await probe.waitUntil("the hanging handler is cancelled") { probe.contains("cancelled h") }
            // Both ended on the server before their client saw the end (TRAILERS, or the handler's cancellation).
            let counts = await metrics.snapshot()
            #expect(counts.inFlight == 0)
            #expect(counts.count("/test.Echo/Gate", .ok) == 1)
            #expect(counts.count("/test.Echo/Hang", .cancelled) == 1)
            await client.close()
        }
    }

    @Test func collectedFamiliesRenderAsPrometheusText() async throws {
        let metrics = RPCServerMetrics()
        try await withMeteredServer(metrics) { port in
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            let _: TestText = try await client.unary("/test.Echo/Unary", request: TestText("hi"))
            await client.close()
        }
        let families = await metrics.collect()
        #expect(families.map(\.name) == [
            "condense_rpc_requests_total", "condense_rpc_request_duration_seconds", "condense_rpc_in_flight_requests",
        ])
        #expect(families.map(\.kind) == [.counter, .histogram, .gauge])
        #expect(families[0].samples == [MetricSample(1, labels: [MetricLabel("method", "/test.Echo/Unary"), MetricLabel("code", "OK")])])
        let buckets = families[1].samples.filter { $0.suffix == "_bucket" }
        #expect(buckets.count == RPCServerMetrics.latencyBounds.count + 1)
        #expect(buckets.last?.labels.last == MetricLabel("le", "+Inf"))
        #expect(buckets.last?.value == 1)
        // Cumulative: never decreasing.
        #expect(zip(buckets, buckets.dropFirst()).allSatisfy { $0.value <= $1.value })
        #expect(families[1].samples.first { $0.suffix == "_count" }?.value == 1)
    }

    @Test func textFormatEscapesAndFormatsValues() {
        var histogram = HistogramCounts(bucketCount: 2)
        for value in [0.0625, 0.5, 0.75, 3] { histogram.observe(value, bounds: [0.1, 1]) }
        let text = PrometheusText.render([
            .counter("a_total", help: "Back\\slash and\nnewline.", 42),
            .gauge("b", help: "By label.", by: "name", [("say \"hi\"\n", 0.25), ("plain", -3)]),
            MetricFamily(
                name: "c_seconds", help: "Latency.", kind: .histogram,
                samples: histogram.samples(bounds: [0.1, 1], labels: [MetricLabel("m", "x")])),
            .gauge("d", help: "Odd values.", .infinity),
        ])
        #expect(text == """
            # HELP a_total Back\\\\slash and\\nnewline.
            # TYPE a_total counter
            a_total 42
            # HELP b By label.
            # TYPE b gauge
            b{name="say \\"hi\\"\\n"} 0.25
            b{name="plain"} -3
            # HELP c_seconds Latency.
            # TYPE c_seconds histogram
            c_seconds_bucket{m="x",le="0.1"} 1
            c_seconds_bucket{m="x",le="1"} 3
            c_seconds_bucket{m="x",le="+Inf"} 4
            c_seconds_sum{m="x"} 4.3125
            c_seconds_count{m="x"} 4
            # HELP d Odd values.
            # TYPE d gauge
            d +Inf

            """)
    }
}
