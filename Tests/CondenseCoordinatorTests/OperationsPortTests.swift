import CondenseCoordinator
import CondenseEmbedding
import CondenseRPC
import CondenseWire
import CondenseWorker
import Foundation
import Testing

extension CoordinatorSuites {
    @Suite("Operations port: health, readiness and metrics over HTTP", .enabled(if: Fixtures.tinyEmbedder != nil, "tiny-llama fixture missing"))
    struct OperationsPortTests {
        let embedder: Embedder

        init() throws {
            embedder = try #require(Fixtures.tinyEmbedder)
        }

        /// A coordinator whose RPC server records metrics, with its operations port, as `condense
        /// coordinator --metrics-listen 127.0.0.1:0` wires them.
        struct MeteredCoordinator {
            let service: CoordinatorService
            let server: RPCServer
            let rpcPort: Int
            let operations: OperationsServer
            let port: Int
            let monitor: Task<Void, Never>

            static func start(fineTune: FineTuneCoordinator? = nil) async throws -> MeteredCoordinator {
                let service = CoordinatorService(fineTune: fineTune, logger: quietLogger)
                let rpcMetrics = RPCServerMetrics()
                let server = RPCServer(
                    configuration: .init(shutdownGracePeriod: .milliseconds(500)), services: [service], metrics: rpcMetrics,
                    logger: quietLogger)
                let rpcPort = try await server.start()
                let operations = OperationsServer(
                    host: "127.0.0.1", port: 0, readiness: { await service.readiness() },
                    metrics: [{ await rpcMetrics.collect() }, { await service.collectMetrics() }], logger: quietLogger)
                let port = try await operations.start()
                let monitor = Task { await service.monitorHeartbeats() }
                return MeteredCoordinator(
                    service: service, server: server, rpcPort: rpcPort, operations: operations, port: port, monitor: monitor)
            }

            func client() async throws -> RPCClient {
                try await RPCClient.connect(host: "127.0.0.1", port: rpcPort, logger: quietLogger)
            }

            func stop() async throws {
                monitor.cancel()
                try await server.stop()
                try await operations.stop()
            }
        }

        /// GET /metrics: 200, the exposition content type, and a body that parses.
        func scrape(_ port: Int) async throws -> Exposition {
            let reply = try await http(port: port, "/metrics")
            #expect(reply.status == 200)
            #expect(reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            return try Exposition(reply.body)
        }

        /// Polls (up to 30 s of wall time) until `condition` holds.
        func eventually(
            _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ condition: () async throws -> Bool
        ) async throws {
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if try await condition() { return }
                try await Task.sleep(for: .milliseconds(10))
            }
            Issue.record("timed out waiting until \(what)", sourceLocation: sourceLocation)
        }

        static let health = Methods.EmbeddingService.health.path
        static let embed = Methods.EmbeddingService.embed.path

        @Test func readinessAndCountersFollowWorkersAndCalls() async throws {
            let coordinator = try await MeteredCoordinator.start()
            let client = try await coordinator.client()

            let live = try await http(port: coordinator.port, "/healthz")
            #expect((live.status, live.body) == (200, "ok\n"))
            #expect(live.headers["content-type"] == "text/plain; charset=utf-8")
            let notReady = try await http(port: coordinator.port, "/readyz")
            #expect((notReady.status, notReady.body) == (503, "no embedding workers registered\n"))

            var metrics = try await scrape(coordinator.port)
            #expect(metrics.types["condense_rpc_requests_total"] == "counter")
            #expect(metrics.types["condense_rpc_request_duration_seconds"] == "histogram")
            #expect(metrics.value("condense_coordinator_workers", ["kind": "embed"]) == 0)
            // Without a state directory there are no jobs to report.
            #expect(metrics.types["condense_coordinator_jobs"] == nil)

            // One Health call moves its counter by one, and its latency histogram by one observation.
            let healthOK = ["method": Self.health, "code": "OK"]
            let before = metrics.value("condense_rpc_requests_total", healthOK) ?? 0
            let _: HealthResponse = try await client.unary(Self.health, request: HealthRequest())
            metrics = try await scrape(coordinator.port)
            #expect(metrics.value("condense_rpc_requests_total", healthOK) == before + 1)
            #expect(metrics.value("condense_rpc_request_duration_seconds_count", ["method": Self.health]) == before + 1)
            #expect(metrics.value("condense_rpc_request_duration_seconds_bucket", ["method": Self.health, "le": "+Inf"]) == before + 1)

            // A worker with its own operations port: not ready until its session is registered.
            let activity = WorkerActivity(kind: .embed)
            let workerOperations = OperationsServer(
                host: "127.0.0.1", port: 0, readiness: { activity.readiness() }, metrics: [{ activity.collectMetrics() }],
                logger: quietLogger)
            let workerPort = try await workerOperations.start()
            let workerNotReady = try await http(port: workerPort, "/readyz")
            #expect((workerNotReady.status, workerNotReady.body) == (503, "not registered with the coordinator\n"))
            let worker = EmbeddingWorker(
                configuration: EmbeddingWorkerConfiguration(connection: CoordinatorConnection(
                    host: "127.0.0.1", port: coordinator.rpcPort, workerID: "w1", heartbeatInterval: .milliseconds(100))),
                embedder: embedder, modelID: "tiny-llama", activity: activity, logger: quietLogger)
            let running = Task { try? await worker.run() }

            try await eventually("the coordinator is ready") { try await http(port: coordinator.port, "/readyz").status == 200 }
            try await eventually("the worker is ready") { try await http(port: workerPort, "/readyz").status == 200 }
            #expect(try await http(port: coordinator.port, "/readyz").body == "ready\n")

            let texts = Fixtures.texts(10)
            let response: EmbedResponse = try await client.unary(Self.embed, request: EmbedRequest(texts: texts))
            let tokens = try #require(response.usage).totalTokens
            #expect(tokens > 0)

            metrics = try await scrape(coordinator.port)
            #expect(metrics.value("condense_coordinator_workers", ["kind": "embed"]) == 1)
            #expect(metrics.value("condense_coordinator_embedded_texts_total") == 10)
            #expect(metrics.value("condense_coordinator_embedded_tokens_total") == Double(tokens))
            #expect(metrics.value("condense_coordinator_queued_texts") == 0)
            #expect(metrics.value("condense_coordinator_in_flight_batches") == 0)
            #expect(metrics.value("condense_rpc_requests_total", ["method": Self.embed, "code": "OK"]) == 1)
            // The worker's Connect session is a call in progress for as long as the worker is attached.
            #expect(metrics.value("condense_rpc_in_flight_requests") == 1)

            let workerMetrics = try await scrape(workerPort)
            #expect(workerMetrics.value("condense_worker_session_open") == 1)
            #expect(workerMetrics.value("condense_worker_batches_total") == 1)
            #expect(workerMetrics.value("condense_worker_texts_total") == 10)
            #expect(workerMetrics.value("condense_worker_tokens_total") == Double(tokens))

            // The worker leaves: the coordinator is not ready any more, and neither is the worker.
            running.cancel()
            await running.value
            try await eventually("the coordinator is not ready") { try await http(port: coordinator.port, "/readyz").status == 503 }
            #expect(try await http(port: workerPort, "/readyz").status == 503)
            let connectEnded = try await scrape(coordinator.port)
            #expect(connectEnded.value("condense_rpc_in_flight_requests") == 0)

            await client.close()
            try await workerOperations.stop()
            try await coordinator.stop()
        }

        @Test func jobsByStateComeFromTheJobStore() async throws {
            let state = FileManager.default.temporaryDirectory.appendingPathComponent("condense-ops-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: state) }
            let fineTune = try FineTuneCoordinator(stateDirectory: state, logger: quietLogger)
            let coordinator = try await MeteredCoordinator.start(fineTune: fineTune)
            let client = try await coordinator.client()

            var metrics = try await scrape(coordinator.port)
            #expect(metrics.types["condense_coordinator_jobs"] == "gauge")
            for state in ["validating", "queued", "running", "succeeded", "failed", "cancelled"] {
                #expect(metrics.value("condense_coordinator_jobs", ["state": state]) == 0, "\(state)")
            }

            // No training worker: the new job waits in the queue.
            let spec = FineTuneJobSpec(name: "ops", hyperparameters: Hyperparameters(duration: .steps(2), batchSize: 2))
            let job: FineTuneJob = try await client.clientStreaming(
                Methods.FineTuneService.createFineTuneJob.path, requestType: CreateFineTuneJobRequest.self, responseType: FineTuneJob.self
            ) { writer in
                try await writer.write(CreateFineTuneJobRequest(kind: .spec(spec)))
                let pairs = (0..<4).map { TrainingPair(text: "text \($0)", positive: "positive \($0)") }
                try await writer.write(CreateFineTuneJobRequest(kind: .pairs(PairChunk(pairs: pairs))))
            }
            metrics = try await scrape(coordinator.port)
            #expect(metrics.value("condense_coordinator_jobs", ["state": "queued"]) == 1)
            #expect(metrics.value("condense_coordinator_queued_jobs") == 1)
            #expect(metrics.value("condense_coordinator_workers", ["kind": "train"]) == 0)

            let _: FineTuneJob = try await client.unary(
                Methods.FineTuneService.cancelJob.path, request: CancelJobRequest(jobID: job.jobID, reason: "test"))
            metrics = try await scrape(coordinator.port)
            #expect(metrics.value("condense_coordinator_jobs", ["state": "queued"]) == 0)
            #expect(metrics.value("condense_coordinator_jobs", ["state": "cancelled"]) == 1)
            #expect(metrics.value("condense_coordinator_queued_jobs") == 0)

            await client.close()
            try await coordinator.stop()
        }

        @Test func unknownPathsOtherMethodsAndShutdown() async throws {
            let coordinator = try await MeteredCoordinator.start()

            let missing = try await http(port: coordinator.port, "/nope")
            #expect(missing.status == 404)
            let posted = try await http("POST", port: coordinator.port, "/metrics")
            #expect(posted.status == 405)
            #expect(posted.headers["allow"] == "GET")
            // Query strings do not change the path.
            #expect(try await http(port: coordinator.port, "/healthz?verbose=1").status == 200)

            // Shutting down: liveness and readiness both fail, metrics still answer.
            coordinator.operations.beginShutdown()
            let live = try await http(port: coordinator.port, "/healthz")
            #expect((live.status, live.body) == (503, "shutting down\n"))
            #expect(try await http(port: coordinator.port, "/readyz").status == 503)
            #expect(try await http(port: coordinator.port, "/metrics").status == 200)

            try await coordinator.stop()
        }
    }
}
