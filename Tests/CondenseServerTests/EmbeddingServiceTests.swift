import CondenseEmbedding
import CondenseRPC
import CondenseServer
import CondenseWire
import Foundation
import Logging
import Testing

/// `condense serve`'s EmbeddingService over real loopback RPC, on the tiny random Llama fixture
/// (written by scripts/gen-test-models.py).
@Suite(.serialized) struct EmbeddingServiceTests {
    static let tinyLlama = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("CondenseModelTests/Fixtures/tiny-llama").path

    static let quietLogger: Logger = {
        var logger = Logger(label: "condense.server.test")
        logger.logLevel = .warning
        return logger
    }()

    /// Serves `host`, connects a client, runs `body`, shuts down.
    func withService(
        host: ModelHost, settings: EmbeddingServiceSettings = .init(),
        _ body: (RPCClient) async throws -> Void
    ) async throws {
        let server = RPCServer(
            configuration: .init(), services: [EmbeddingServiceProvider(host: host, settings: settings)],
            logger: Self.quietLogger)
        let port = try await server.start()
        let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: Self.quietLogger)
        do {
            try await body(client)
        } catch {
            await client.close()
            try await server.stop()
            throw error
        }
        await client.close()
        try await server.stop()
    }

    func loadedHost() async -> ModelHost {
        let host = ModelHost(logger: Self.quietLogger)
        await host.load(path: Self.tinyLlama)
        return host
    }

    func code(_ call: () async throws -> Void) async -> StatusCode? {
        do {
            try await call()
            return nil
        } catch let error as RPCError {
            return error.code
        } catch {
            return .unknown
        }
    }

    @Test func healthFollowsTheModelLifeCycle() async throws {
        let loading = ModelHost(logger: Self.quietLogger)
        try await withService(host: loading) { client in
            let before = try await client.unary(
                Methods.EmbeddingService.health.path, request: HealthRequest(), responseType: HealthResponse.self)
            #expect(before.status == .notServing && before.detail == "loading model")
            #expect(await code {
                _ = try await client.unary(
                    Methods.EmbeddingService.getModelInfo.path, request: GetModelInfoRequest(), responseType: ModelInfo.self)
            } == .unavailable)
            await loading.load(path: Self.tinyLlama)
            let after = try await client.unary(
                Methods.EmbeddingService.health.path, request: HealthRequest(), responseType: HealthResponse.self)
            #expect(after.status == .serving && after.detail == "tiny-llama")
            let missing = ModelHost(logger: Self.quietLogger)
            await missing.load(path: "/nonexistent/model.gguf")
            guard case .failed(let reason) = await missing.state else {
                Issue.record("a missing model file must fail to load")
                return
            }
            #expect(reason.contains("/nonexistent/model.gguf"))
        }
    }

    @Test func embedMatchesTheLocalEmbedderAndFailsOnlyBadItems() async throws {
        let host = await loadedHost()
        let embedder = try #require(await host.servedModel?.embedder)
        try await withService(host: host) { client in
            let texts = ["alpha river", "", "stone quick blue"]
            let request = EmbedRequest(
                texts: texts, malformedTexts: [],
                options: EmbedOptions(prompt: .promptName("cluster1"), pooling: .last, normalize: false))
            let response = try await client.unary(
                Methods.EmbeddingService.embed.path, request: request, responseType: EmbedResponse.self)
            #expect(response.results.map(\.index) == [0, 1, 2])
            #expect(response.results[1].error?.code == .emptyText)
            let local = try embedder.embed(
                texts, options: EmbeddingOptions(prompt: PromptTemplate(nameOrTemplate: "cluster1"), pooling: .last))
            for index in [0, 2] {
                #expect(response.results[index].vector?.values == (try? local[index].get()))
            }
            #expect(response.usage?.succeededItems == 2 && response.usage?.failedItems == 1)
            #expect(response.model == "tiny-llama")
        }
    }

    @Test func invalidUTF8FailsOnlyThatItem() async throws {
        try await withService(host: await loadedHost()) { client in
            let request = EmbedRequest(
                texts: ["fine", ""], malformedTexts: [MalformedText(index: 1, bytes: [0x66, 0xFF, 0x66])])
            let response = try await client.unary(
                Methods.EmbeddingService.embed.path, request: request, responseType: EmbedResponse.self)
            #expect(response.results[0].vector != nil)
            #expect(response.results[1].error?.code == .invalidUTF8)
        }
    }

    @Test func badRequestsGetTheirStatusAndTheServerKeepsServing() async throws {
        let settings = EmbeddingServiceSettings(maxTextsPerRequest: 3)
        try await withService(host: await loadedHost(), settings: settings) { client in
            func embed(_ texts: [String], _ options: EmbedOptions) async -> StatusCode? {
                await code {
                    _ = try await client.unary(
                        Methods.EmbeddingService.embed.path, request: EmbedRequest(texts: texts, options: options),
                        responseType: EmbedResponse.self)
                }
            }
            #expect(await embed(["a", "b", "c", "d"], EmbedOptions()) == .invalidArgument)  // over the limit
            #expect(await embed(["a"], EmbedOptions(prompt: .promptTemplate("no placeholder"))) == .invalidArgument)
            #expect(await embed(["a"], EmbedOptions(dimensions: 100_000)) == .invalidArgument)
            #expect(await embed(["a"], EmbedOptions(adapterID: "missing")) == .notFound)
            #expect(await embed(["still serving"], EmbedOptions()) == nil)
        }
    }

    @Test func embedStreamDeliversEveryIndexOnceWithASummary() async throws {
        let settings = EmbeddingServiceSettings(streamBatchTexts: 4)
        try await withService(host: await loadedHost(), settings: settings) { client in
            let texts = (0..<23).map { "text number \($0)" }
            let (indexes, summaries) = try await client.bidirectional(
                Methods.EmbeddingService.embedStream.path, requestType: EmbedStreamRequest.self,
                responseType: EmbedStreamResponse.self,
                sendRequests: { writer in
                    for first in stride(from: 0, to: texts.count, by: 5) {
                        let chunk = Array(texts[first..<min(first + 5, texts.count)])
                        try await writer.write(EmbedStreamRequest(
                            options: first == 0 ? EmbedOptions(prompt: .promptName("eol")) : nil,
                            firstIndex: UInt64(first), texts: chunk))
                    }
                },
                handleResponses: { responses in
                    var indexes: [UInt64] = []
                    var summaries: [EmbedStreamSummary] = []
                    for try await response in responses {
                        switch response.kind {
                        case .batch(let batch): indexes += batch.results.map(\.index)
                        case .summary(let summary): summaries.append(summary)
                        case nil: Issue.record("response without a kind")
                        }
                    }
                    return (indexes, summaries)
                })
            #expect(indexes.sorted() == (0..<23).map(UInt64.init))
            #expect(summaries.count == 1 && summaries.first?.usage?.succeededItems == 23)
        }
    }
}
