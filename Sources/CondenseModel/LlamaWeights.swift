import CondenseTensor

/// Decoder architectures the engine runs. They share the Llama block; the differences are flags.
public enum Architecture: String, Sendable, CaseIterable {
    case llama      // Llama 2/3.x, SmolLM
    case qwen2      // q/k/v biases
    case qwen3      // per-head q/k RMSNorm, no biases
}

/// Llama 3.x frequency-dependent RoPE scaling (`rope_scaling.rope_type == "llama3"`).
public struct Llama3RopeScaling: Sendable, Equatable {
    public var factor: Float
    public var lowFreqFactor: Float
    public var highFreqFactor: Float
    public var originalMaxPositionEmbeddings: Int
    public init(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositionEmbeddings: Int) {
        self.factor = factor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }
}

/// Hyperparameters of a decoder, named as in HF `config.json`.
public struct ModelConfig: Sendable, Equatable {
    public var architecture: Architecture
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var ropeScaling: Llama3RopeScaling?
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool

    public init(
        architecture: Architecture, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, layerCount: Int,
        headCount: Int, kvHeadCount: Int, headDim: Int, rmsNormEps: Float, ropeTheta: Float,
        ropeScaling: Llama3RopeScaling?, maxPositionEmbeddings: Int, tieWordEmbeddings: Bool
    ) {
        self.architecture = architecture
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
    }
}

/// One decoder block's weights, F32, in Hugging Face layout: linear weights are [out][in], and
/// Q/K rows are in HF's rotate-half RoPE order (loaders of GGUF files undo llama.cpp's permutation).
public struct LayerWeights: Sendable {
    public var attentionNorm: [Float]          // [hidden]
    public var wq: Matrix                      // [heads*headDim][hidden]
    public var wk: Matrix                      // [kvHeads*headDim][hidden]
    public var wv: Matrix                      // [kvHeads*headDim][hidden]
    public var wo: Matrix                      // [hidden][heads*headDim]
    public var qBias: [Float]?                 // qwen2
    public var kBias: [Float]?
    public var vBias: [Float]?
    public var qNorm: [Float]?                 // qwen3: [headDim], applied per head before RoPE
    public var kNorm: [Float]?
    public var ffnNorm: [Float]                // [hidden]
    public var wGate: Matrix                   // [intermediate][hidden]
    public var wUp: Matrix                     // [intermediate][hidden]
    public var wDown: Matrix                   // [hidden][intermediate]

    public init(
        attentionNorm: [Float], wq: Matrix, wk: Matrix, wv: Matrix, wo: Matrix,
        qBias: [Float]? = nil, kBias: [Float]? = nil, vBias: [Float]? = nil,
        qNorm: [Float]? = nil, kNorm: [Float]? = nil,
        ffnNorm: [Float], wGate: Matrix, wUp: Matrix, wDown: Matrix
    ) {
        self.attentionNorm = attentionNorm
        self.wq = wq
        self.wk = wk
        self.wv = wv
        self.wo = wo
        self.qBias = qBias
        self.kBias = kBias
        self.vBias = vBias
        self.qNorm = qNorm
        self.kNorm = kNorm
        self.ffnNorm = ffnNorm
        self.wGate = wGate
        self.wUp = wUp
        self.wDown = wDown
    }
}

/// All weights of a decoder. The LM head is not loaded: embeddings only need hidden states
/// (it is `tokenEmbedding` itself when tied, which is all text generation needs).
public struct ModelWeights: Sendable {
    public var config: ModelConfig
    public var tokenEmbedding: Matrix          // [vocab][hidden]
    public var layers: [LayerWeights]
    public var finalNorm: [Float]              // [hidden]
    /// Present only when the model has an untied output projection ([vocab][hidden]).
    public var outputProjection: Matrix?

    public init(config: ModelConfig, tokenEmbedding: Matrix, layers: [LayerWeights], finalNorm: [Float], outputProjection: Matrix? = nil) {
        self.config = config
        self.tokenEmbedding = tokenEmbedding
        self.layers = layers
        self.finalNorm = finalNorm
        self.outputProjection = outputProjection
    }
}
