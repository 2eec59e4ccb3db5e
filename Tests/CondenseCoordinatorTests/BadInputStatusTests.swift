import CondenseCoordinator
import CondenseEmbedding
import CondenseRPC
import CondenseServer
import CondenseWire
import Foundation
import Testing

/// An embedding worker driven by the test: registers, records every message from the coordinator
/// (assignments, cancellations) and never answers.
final class RecordingEmbedWorker: Sendable {
    let client: RPCClient
    let messages: AsyncStream<CoordinatorMessage>
    private let session: Task<Void, Never>

    init(port: Int, id: String) async throws {
        client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
        let (messages, received) = AsyncStream<CoordinatorMessage>.makeStream()
        self.messages = messages
        let client = self.client
        session = Task {
            _ = try? await client.bidirectional(
                Methods.WorkerService.connect.path, requestType: WorkerMessage.self, responseType: CoordinatorMessage.self,
                sendRequests: { writer in
                    try await writer.write(WorkerMessage(kind: .registration(Register(workerID: id, kind: .embed, models: ["stall"]))))
                    try await Task.sleep(for: .seconds(3600))
                },
                handleResponses: { responses in
                    for try await message in responses { received.yield(message) }
                })
            received.finish()
        }
    }

    func kill() async {
        session.cancel()
        await client.close()
    }
}

extension CoordinatorSuites {
    /// Every bad input of the embedding API, with the status Protos/services.md documents for it, on
    /// the coordinator with a remote-style worker and on `condense serve`'s composition (the same
    /// coordinator, checking options against the model it holds): after each, the same server
    /// answers a good call.
    @Suite("Bad input gets its documented status; the server stays good", .enabled(if: Fixtures.tinyEmbedder != nil, "tiny-llama fixture missing"))
    struct BadInputStatusTests {
        enum Composition: String, CaseIterable, CustomTestStringConvertible {
            /// `condense coordinator` + `condense worker embed`: options needing the model are checked by the worker.
            case coordinator
            /// `condense serve`: the coordinator checks them against its own copy of the model first.
            case serve
            var testDescription: String { rawValue }
        }

        static let maxTexts = 4
        let stateDirectory = TrainingFixtures.temporaryDirectory("bad-input")

        func start(_ composition: Composition) async throws -> TestCluster {
            var settings = CoordinatorSettings(batchTexts: 16, maxTextsPerRequest: Self.maxTexts)
            if composition == .serve {
                // As ServeCommand builds it.
                let host = ModelHost(logger: quietLogger)
                await host.load(path: Fixtures.tinyLlama)
                let serviceSettings = EmbeddingServiceSettings(maxTextsPerRequest: Self.maxTexts)
                settings.modelOptionCheck = { options in
                    guard let served = await host.servedModel else { return }
                    _ = try EmbeddingServiceProvider.embeddingOptions(options, settings: serviceSettings, embedder: served.embedder)
                }
            }
            let fineTune = try FineTuneCoordinator(stateDirectory: stateDirectory, logger: quietLogger)
            return try await TestCluster.start(settings: settings, fineTune: fineTune)
        }

        func embed(_ client: RPCClient, _ texts: [String], _ options: EmbedOptions? = nil, malformed: [MalformedText] = [],
                   timeout: Duration? = nil) async throws -> EmbedResponse {
            try await client.unary(
                Methods.EmbeddingService.embed.path, request: EmbedRequest(texts: texts, malformedTexts: malformed, options: options),
                options: CallOptions(timeout: timeout))
        }

        func stream(_ client: RPCClient, _ options: EmbedOptions) async throws {
            _ = try await client.bidirectional(
                Methods.EmbeddingService.embedStream.path, requestType: EmbedStreamRequest.self, responseType: EmbedStreamResponse.self,
                sendRequests: { writer in try await writer.write(EmbedStreamRequest(options: options, texts: ["a", "b"])) },
                handleResponses: { responses in for try await _ in responses {} })
        }

        /// A good call right after: answered in full.
        func expectGood(_ client: RPCClient, _ case: String) async {
            do {
                let response = try await embed(client, ["one good text", "another"])
                #expect(response.results.count == 2 && response.results.allSatisfy { $0.vector != nil }, "after \(`case`)")
            } catch {
                Issue.record("the good call after \(`case`) failed: \(error)")
            }
        }

        @Test(arguments: Composition.allCases) func badRequests(_ composition: Composition) async throws {
            let cluster = try await start(composition)
            let worker = cluster.startWorker("w1", embedder: try #require(Fixtures.tinyEmbedder))
            try await cluster.waitForWorkers(1)
            let client = try await cluster.client()

            let cases: [(name: String, expected: StatusCode, call: () async throws -> Void)] = [
                ("more texts than the per-call limit", .invalidArgument, { _ = try await embed(client, Fixtures.texts(Self.maxTexts + 1)) }),
                ("no texts", .invalidArgument, { _ = try await embed(client, []) }),
                ("unknown adapter", .notFound, { _ = try await embed(client, ["a"], EmbedOptions(adapterID: "nope")) }),
                ("unknown adapter, streamed", .notFound, { try await stream(client, EmbedOptions(adapterID: "nope")) }),
                ("adapter id that is not an id", .notFound, { _ = try await embed(client, ["a"], EmbedOptions(adapterID: "../escape")) }),
                ("template without {text}", .invalidArgument, {
                    _ = try await embed(client, ["a"], EmbedOptions(prompt: .promptTemplate("no placeholder")))
                }),
                ("template without {text}, streamed", .invalidArgument, {
                    try await stream(client, EmbedOptions(prompt: .promptTemplate("no placeholder")))
                }),
                ("unknown prompt name", .invalidArgument, { _ = try await embed(client, ["a"], EmbedOptions(prompt: .promptName("nope"))) }),
            ]
            for (name, expected, call) in cases {
                #expect(await statusCode(call) == expected, "\(name) on \(composition)")
                await expectGood(client, name)
            }

            // Invalid UTF-8 fails only its item; the call is OK.
            let mixed = try await embed(client, ["fine", "", "also fine"], malformed: [MalformedText(index: 1, bytes: [0x66, 0xFF, 0xFE])])
            #expect(mixed.results.map { $0.error?.code } == [nil, .invalidUTF8, nil])
            #expect(mixed.usage?.failedItems == 1)
            await expectGood(client, "invalid UTF-8")

            // More dimensions than the model has: serve knows the model and refuses the call; a
            // coordinator leaves it to the worker, which fails every item saying why.
            switch composition {
            case .serve:
                #expect(await statusCode { _ = try await embed(client, ["a"], EmbedOptions(dimensions: 100_000)) } == .invalidArgument)
            case .coordinator:
                let response = try await embed(client, ["a"], EmbedOptions(dimensions: 100_000))
                #expect(response.results.map { $0.error?.code } == [.internal])
            }
            await expectGood(client, "too many dimensions")

            worker.cancel()
            await client.close()
            try await cluster.stop()
        }

        @Test(arguments: Composition.allCases) func cancelledAndExpiredCallsReleaseTheirBatches(_ composition: Composition) async throws {
            let cluster = try await start(composition)
            // Registered first, so it wins the ties and gets the batches of the calls below.
            let stall = try await RecordingEmbedWorker(port: cluster.port, id: "stall")
            try await cluster.waitForWorkers(1)
            let client = try await cluster.client()
            var messages = stall.messages.makeAsyncIterator()

            // An expired deadline: DEADLINE_EXCEEDED, and the worker is told to drop the batch.
            #expect(await statusCode { _ = try await embed(client, ["slow"], timeout: .milliseconds(300)) } == .deadlineExceeded)
            #expect(await Self.assignmentThenCancel(&messages), "the expired call's batch was withdrawn")

            // A call the client cancels: CANCELLED for the client, the batch withdrawn as well.
            let call = Task { _ = try await embed(client, ["cancelled"]) }
            let withdrawn = await Self.assignmentThenCancel(&messages) { call.cancel() }
            #expect(await statusCode { try await call.value } == .cancelled)
            #expect(withdrawn, "the cancelled call's batch was withdrawn")

            // The server is unharmed: with a worker that answers, a good call succeeds.
            await stall.kill()
            try await cluster.waitForWorkers(0)
            let worker = cluster.startWorker("w1", embedder: try #require(Fixtures.tinyEmbedder))
            try await cluster.waitForWorkers(1)
            await expectGood(client, "cancelled and expired calls")
            worker.cancel()
            await client.close()
            try await cluster.stop()
        }

        /// Waits for an assignment (then runs `onAssigned`) and a cancellation of that same assignment.
        static func assignmentThenCancel(
            _ messages: inout AsyncStream<CoordinatorMessage>.Iterator, onAssigned: () -> Void = {}
        ) async -> Bool {
            var assigned: String?
            while let message = await messages.next() {
                switch message.kind {
                case .assignment(let assignment):
                    assigned = assignment.assignmentID
                    onAssigned()
                case .cancel(let cancel):
                    return cancel.assignmentID == assigned
                default:
                    break
                }
            }
            return false
        }
    }
}
