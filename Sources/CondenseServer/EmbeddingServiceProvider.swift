import CondenseEmbedding
import CondenseModel
import CondenseRPC
import CondenseTensor
import CondenseWire
import Logging

/// Server-wide embedding defaults and limits.
public struct EmbeddingServiceSettings: Sendable {
    /// Prompt for requests that name none.
    public var defaultPrompt: PromptTemplate
    /// Pooling for requests that leave it unspecified.
    public var defaultPooling: CondenseEmbedding.Pooling
    /// Most texts one `Embed` call may carry (bulk work belongs on `EmbedStream`).
    public var maxTextsPerRequest: Int
    /// `EmbedStream` embeds once this many texts are pending (or the client half-closes).
    public var streamBatchTexts: Int

    public init(
        defaultPrompt: PromptTemplate = .none, defaultPooling: CondenseEmbedding.Pooling = .mean,
        maxTextsPerRequest: Int = 2048, streamBatchTexts: Int = 128
    ) {
        self.defaultPrompt = defaultPrompt
        self.defaultPooling = defaultPooling
        self.maxTextsPerRequest = maxTextsPerRequest
        self.streamBatchTexts = streamBatchTexts
    }
}

/// `condense.v1.EmbeddingService` backed by a model in this process. Forward passes run one at a
/// time on `ComputeQueue` (each already uses every core through OpenBLAS).
public struct EmbeddingServiceProvider: RPCService {
    private let host: ModelHost
    private let settings: EmbeddingServiceSettings

    public init(host: ModelHost, settings: EmbeddingServiceSettings = .init()) {
        self.host = host
        self.settings = settings
    }

    public func register(in registry: inout RPCMethodRegistry) {
        let host = self.host
        let settings = self.settings
        registry.unary(Methods.EmbeddingService.health.path) { (request: HealthRequest, _) -> HealthResponse in
            guard request.service.isEmpty || request.service == Methods.EmbeddingService.serviceName else {
                return HealthResponse(status: .unknown, detail: "unknown service \(request.service)")
            }
            switch await host.state {
            case .loading: return HealthResponse(status: .notServing, detail: "loading model")
            case .failed(let reason): return HealthResponse(status: .notServing, detail: "model failed to load: \(reason)")
            case .ready(let served): return HealthResponse(status: .serving, detail: served.modelID)
            }
        }
        ModelQueryService(host: host, settings: settings).register(in: &registry)
        registry.unary(Methods.EmbeddingService.embed.path) { (request: EmbedRequest, context) -> EmbedResponse in
            guard request.texts.count <= settings.maxTextsPerRequest else {
                throw RPCError(
                    code: .invalidArgument,
                    message: "\(request.texts.count) texts in one Embed call; the limit is \(settings.maxTextsPerRequest) (use EmbedStream for bulk work)")
            }
            let served = try await Self.ready(host)
            let options = try Self.embeddingOptions(request.options, settings: settings, embedder: served.embedder)
            let precision = Self.precision(request.options?.precision)
            var usage = Usage()
            let results = try await Self.embed(
                request.texts, malformed: request.malformedTexts, firstIndex: 0, options: options,
                precision: precision, embedder: served.embedder, usage: &usage)
            context.logger.debug("embedded", metadata: ["texts": "\(request.texts.count)", "tokens": "\(usage.totalTokens)"])
            return EmbedResponse(results: results, usage: usage, model: served.modelID)
        }
        registry.bidirectional(Methods.EmbeddingService.embedStream.path) {
            (requests: RPCMessageStream<EmbedStreamRequest>, responses: RPCMessageWriter<EmbedStreamResponse>, _) in
            let served = try await Self.ready(host)
            var options: EmbeddingOptions?
            var precision = OutputPrecision.float32
            var pendingTexts: [String] = []
            var pendingMalformed: [MalformedText] = []
            var pendingFirstIndex: UInt64 = 0
            var usage = Usage()

            func flush() async throws {
                guard let options, !pendingTexts.isEmpty else { return }
                let results = try await Self.embed(
                    pendingTexts, malformed: pendingMalformed, firstIndex: pendingFirstIndex, options: options,
                    precision: precision, embedder: served.embedder, usage: &usage)
                pendingFirstIndex += UInt64(pendingTexts.count)
                pendingTexts.removeAll(keepingCapacity: true)
                pendingMalformed.removeAll()
                try await responses.write(EmbedStreamResponse(kind: .batch(EmbeddingBatch(results: results))))
            }

            for try await chunk in requests {
                if options == nil {
                    options = try Self.embeddingOptions(chunk.options, settings: settings, embedder: served.embedder)
                    precision = Self.precision(chunk.options?.precision)
                    pendingFirstIndex = chunk.firstIndex
                }
                // Indexes must continue where the previous chunk ended: results are tagged by index.
                let expected = pendingFirstIndex + UInt64(pendingTexts.count)
                guard chunk.firstIndex == expected || chunk.texts.isEmpty else {
                    throw RPCError(
                        code: .invalidArgument,
                        message: "chunk starts at index \(chunk.firstIndex), expected \(expected)")
                }
                pendingMalformed += chunk.malformedTexts.map {
                    MalformedText(index: pendingTexts.count + $0.index, bytes: $0.bytes)
                }
                pendingTexts += chunk.texts
                if pendingTexts.count >= settings.streamBatchTexts { try await flush() }
            }
            try await flush()
            try await responses.write(EmbedStreamResponse(kind: .summary(EmbedStreamSummary(usage: usage, model: served.modelID))))
        }
    }

    // MARK: Helpers

    /// Embeds on the compute queue and converts results to wire form, counting usage. Texts that
    /// arrived as invalid UTF-8 (`malformed`, indexes into `texts`) fail as such.
    public static func embed(
        _ texts: [String], malformed: [MalformedText], firstIndex: UInt64, options: EmbeddingOptions,
        precision: OutputPrecision, embedder: Embedder, usage: inout Usage
    ) async throws -> [EmbeddingResult] {
        try Task.checkCancellation()
        let outcome = await ComputeQueue.shared.run { Result { () throws(EmbeddingError) in
            try embedder.embedDetailed(texts, options: options)
        } }
        var items: [Result<EmbeddedText, EmbeddingError>]
        switch outcome {
        case .success(let value): items = value
        case .failure(let error): throw RPCError(code: .invalidArgument, message: error.description)
        }
        for text in malformed where items.indices.contains(text.index) { items[text.index] = .failure(.invalidUTF8) }
        return items.enumerated().map { offset, item in
            let index = firstIndex + UInt64(offset)
            switch item {
            case .success(let embedded):
                usage.totalTokens += UInt64(embedded.tokenCount)
                usage.promptTokens += UInt64(embedded.promptTokenCount)
                usage.succeededItems += 1
                let encoded = EncodedEmbedding(embedded.vector, precision: precision)
                return EmbeddingResult(
                    index: index,
                    vector: Vector(
                        precision: wirePrecision(precision), values: encoded.values, data: encoded.data,
                        scale: encoded.scale, dimensions: UInt32(encoded.dimensions)),
                    tokenCount: UInt32(embedded.tokenCount), truncated: embedded.truncated)
            case .failure(let error):
                usage.failedItems += 1
                return EmbeddingResult(index: index, error: itemError(error))
            }
        }
    }

    static func ready(_ host: ModelHost) async throws -> ServedModel {
        switch await host.state {
        case .ready(let served): return served
        case .loading: throw RPCError(code: .unavailable, message: "model is loading", retryAfterMs: 1000)
        case .failed(let reason): throw RPCError(code: .failedPrecondition, message: "model failed to load: \(reason)")
        }
    }

    /// Wire options -> engine options; unset fields take the server's defaults.
    public static func embeddingOptions(
        _ wire: EmbedOptions?, settings: EmbeddingServiceSettings, embedder: Embedder
    ) throws -> EmbeddingOptions {
        let wire = wire ?? EmbedOptions()
        guard wire.adapterID.isEmpty else {
            throw RPCError(code: .notFound, message: "unknown adapter '\(wire.adapterID)'")
        }
        var options = EmbeddingOptions(prompt: settings.defaultPrompt, pooling: settings.defaultPooling, normalize: wire.normalize ?? true)
        do {
            switch wire.prompt {
            case .promptName(let name): options.prompt = try PromptTemplate(nameOrTemplate: name)
            case .promptTemplate(let template): options.prompt = try PromptTemplate(nameOrTemplate: template)
            case nil: break
            }
            switch wire.pooling {
            case .unspecified: break
            case .mean: options.pooling = .mean
            case .last: options.pooling = .last
            case .eos: options.pooling = .eos
            case .weightedMean: options.pooling = .weightedMean
            }
            options.excludePrompt = wire.excludePrompt
            options.dimensions = wire.dimensions == 0 ? nil : Int(wire.dimensions)
            if wire.maxTokens != 0 { options.maxTokens = Int(wire.maxTokens) }
            options.truncation = wire.truncation == .reject ? .reject : .truncate
            try embedder.validate(options)
        } catch {
            throw RPCError(code: .invalidArgument, message: error.description)
        }
        return options
    }

    public static func precision(_ wire: Precision?) -> OutputPrecision {
        switch wire ?? .unspecified {
        case .unspecified, .float32: .float32
        case .float16: .float16
        case .int8: .int8
        case .binary: .binary
        }
    }

    static func wirePrecision(_ precision: OutputPrecision) -> Precision {
        switch precision {
        case .float32: .float32
        case .float16: .float16
        case .int8: .int8
        case .binary: .binary
        }
    }

    public static func itemError(_ error: EmbeddingError) -> ItemError {
        let code: ItemErrorCode = switch error {
        case .emptyText: .emptyText
        case .invalidUTF8: .invalidUTF8
        case .textTooLong, .exceedsModelLimit: .tooLong
        default: .internal
        }
        return ItemError(code: code, message: error.description)
    }

    static func modelInfo(_ served: ServedModel, settings: EmbeddingServiceSettings) -> ModelInfo {
        let config = served.embedder.model.config
        let quantization = served.summary.tensorTypeCounts
            .filter { $0.key != "F32" }.max { $0.value < $1.value }?.key ?? "F32"
        let defaultPooling: CondenseWire.Pooling = switch settings.defaultPooling {
        case .mean: .mean
        case .last: .last
        case .eos: .eos
        case .weightedMean: .weightedMean
        }
        return ModelInfo(
            modelID: served.modelID, architecture: config.architecture.rawValue,
            dimensions: UInt32(config.hiddenSize), layers: UInt32(config.layerCount), heads: UInt32(config.headCount),
            kvHeads: UInt32(config.kvHeadCount), vocabSize: UInt32(served.embedder.tokenizer.vocabularySize),
            quantization: quantization, tokenizer: served.tokenizerDescription,
            maxTokens: UInt32(served.embedder.model.maxSequenceLength), blasCore: BLASRuntime.coreName,
            adaptersLoaded: [], promptNames: PromptTemplate.namedPromptNames, defaultPooling: defaultPooling)
    }
}
