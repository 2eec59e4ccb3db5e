import CondenseEmbedding
import CondenseRPC
import CondenseWire

/// The model questions of `EmbeddingService`, GetModelInfo and Tokenize, answered from a model in this
/// process: part of `EmbeddingServiceProvider`, and next to the coordinator in `condense serve`.
public struct ModelQueryService: RPCService {
    private let host: ModelHost
    private let settings: EmbeddingServiceSettings

    public init(host: ModelHost, settings: EmbeddingServiceSettings = .init()) {
        self.host = host
        self.settings = settings
    }

    public func register(in registry: inout RPCMethodRegistry) {
        let host = self.host
        let settings = self.settings
        registry.unary(Methods.EmbeddingService.getModelInfo.path) { (_: GetModelInfoRequest, _) -> ModelInfo in
            EmbeddingServiceProvider.modelInfo(try await EmbeddingServiceProvider.ready(host), settings: settings)
        }
        registry.unary(Methods.EmbeddingService.tokenize.path) { (request: TokenizeRequest, _) -> TokenizeResponse in
            let embedder = try await EmbeddingServiceProvider.ready(host).embedder
            let options = try EmbeddingServiceProvider.embeddingOptions(request.options, settings: settings, embedder: embedder)
            return TokenizeResponse(results: request.texts.map { text in
                do throws(EmbeddingError) {
                    let prepared = try embedder.prepare(text, options: options)
                    return TokenizedText(
                        tokenIDs: prepared.tokens.map { UInt32(bitPattern: $0) },
                        pieces: request.includePieces ? prepared.tokens.map { embedder.tokenizer.bytes(of: $0) } : [],
                        promptTokenCount: UInt32(prepared.promptTokenCount), truncated: prepared.truncated)
                } catch {
                    return TokenizedText(error: EmbeddingServiceProvider.itemError(error))
                }
            })
        }
    }
}
