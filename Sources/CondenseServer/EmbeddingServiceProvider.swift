import CondenseModel
import CondenseRPC
import CondenseTensor
import CondenseWire
import Logging

/// `condense.v1.EmbeddingService` backed by a model in this process.
public struct EmbeddingServiceProvider: RPCService {
    private let host: ModelHost

    public init(host: ModelHost) {
        self.host = host
    }

    public func register(in registry: inout RPCMethodRegistry) {
        let host = self.host
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
        registry.unary(Methods.EmbeddingService.getModelInfo.path) { (_: GetModelInfoRequest, _) -> ModelInfo in
            let served = try await Self.ready(host)
            return Self.modelInfo(served)
        }
    }

    static func ready(_ host: ModelHost) async throws -> ServedModel {
        switch await host.state {
        case .ready(let served): return served
        case .loading: throw RPCError(code: .unavailable, message: "model is loading", retryAfterMs: 1000)
        case .failed(let reason): throw RPCError(code: .failedPrecondition, message: "model failed to load: \(reason)")
        }
    }

    static func modelInfo(_ served: ServedModel) -> ModelInfo {
        let config = served.model.config
        let quantization = served.summary.tensorTypeCounts
            .filter { $0.key != "F32" }.max { $0.value < $1.value }?.key ?? "F32"
        return ModelInfo(
            modelID: served.modelID, architecture: config.architecture.rawValue,
            dimensions: UInt32(config.hiddenSize), layers: UInt32(config.layerCount), heads: UInt32(config.headCount),
            kvHeads: UInt32(config.kvHeadCount), vocabSize: UInt32(served.tokenizer.vocabularySize),
            quantization: quantization, tokenizer: served.tokenizerDescription,
            maxTokens: UInt32(served.model.maxSequenceLength), blasCore: BLASRuntime.coreName,
            adaptersLoaded: [], promptNames: [], defaultPooling: .mean)
    }
}
