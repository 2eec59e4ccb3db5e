import Foundation

/// A Hugging Face model directory: `config.json` plus `model.safetensors` or shards listed in
/// `model.safetensors.index.json`.
public final class HuggingFaceDirectory: @unchecked Sendable {
    public let path: String
    public let config: ModelConfig
    /// The shards, in the order the sorted index first names them (one element for an unsharded model).
    public let shards: [SafeTensorsFile]
    /// `_name_or_path` from config.json when present, else the directory name.
    public let modelName: String
    private let shardOfTensor: [String: Int]

    public static let configFile = "config.json"
    public static let weightsFile = "model.safetensors"
    public static let indexFile = "model.safetensors.index.json"

    public init(path: String) throws(ModelLoadError) {
        self.path = path
        let configPath = Self.join(path, Self.configFile)
        let rawConfig: HuggingFaceConfig
        do {
            rawConfig = try JSONDecoder().decode(HuggingFaceConfig.self, from: try Self.readFile(configPath))
        } catch let error as ModelLoadError {
            throw error
        } catch {
            throw .corrupted(path: configPath, detail: SafeTensorsFile.describe(error))
        }

        let indexPath = Self.join(path, Self.indexFile)
        var shardNames: [String] = []
        var shardOfTensorName: [String: String] = [:]
        if FileManager.default.fileExists(atPath: indexPath) {
            let index: SafeTensorsIndex
            do {
                index = try JSONDecoder().decode(SafeTensorsIndex.self, from: try Self.readFile(indexPath))
            } catch let error as ModelLoadError {
                throw error
            } catch {
                throw .corrupted(path: indexPath, detail: SafeTensorsFile.describe(error))
            }
            for (tensor, shard) in index.weightMap.sorted(by: { $0.key < $1.key }) {
                guard !shard.contains("/"), !shard.isEmpty else {
                    throw .corrupted(path: indexPath, detail: "shard name '\(shard)' of '\(tensor)' is not a file in the directory")
                }
                if !shardNames.contains(shard) { shardNames.append(shard) }
                shardOfTensorName[tensor] = shard
            }
        } else {
            shardNames = [Self.weightsFile]
        }
        var shards: [SafeTensorsFile] = []
        var shardOfTensor: [String: Int] = [:]
        for (number, shardName) in shardNames.enumerated() {
            let shard = try SafeTensorsFile(path: Self.join(path, shardName))
            for name in shard.tensors.keys {
                if let listed = shardOfTensorName[name], listed != shardName { continue }
                guard shardOfTensor.updateValue(number, forKey: name) == nil else {
                    throw .corrupted(path: shard.path, detail: "tensor '\(name)' is stored in more than one shard")
                }
            }
            shards.append(shard)
        }
        for (tensor, shard) in shardOfTensorName where shardOfTensor[tensor] == nil {
            throw .corrupted(path: indexPath, detail: "index lists '\(tensor)' in \(shard), which does not contain it")
        }
        self.shards = shards
        self.shardOfTensor = shardOfTensor
        let hasOutputProjection = shardOfTensor[TensorNaming.huggingFace.name(.outputProjection, 0)] != nil
        self.config = try rawConfig.modelConfig(hasOutputProjection: hasOutputProjection)
        self.modelName = rawConfig.nameOrPath.flatMap { $0.isEmpty ? nil : $0 }
            ?? URL(fileURLWithPath: path).standardizedFileURL.lastPathComponent
    }

    /// Every tensor in the directory, across shards.
    public var tensorInfos: [SafeTensorInfo] {
        shardOfTensor.keys.sorted().compactMap { name in shardOfTensor[name].flatMap { shards[$0].tensors[name] } }
    }

    public func tensorF32(named name: String) throws(ModelLoadError) -> [Float] {
        guard let shard = shardOfTensor[name] else { throw .missingTensor(name: name) }
        return try shards[shard].tensorF32(named: name)
    }

    /// All weights as F32 (safetensors already are in HF's rotate-half Q/K order).
    public func modelWeights() throws(ModelLoadError) -> ModelWeights {
        try WeightAssembler(config: config, source: self, naming: .huggingFace, queryKeyRowsInterleaved: false).assemble()
    }

    static func join(_ directory: String, _ file: String) -> String {
        directory.hasSuffix("/") ? directory + file : directory + "/" + file
    }

    static func readFile(_ path: String) throws(ModelLoadError) -> Data {
        let file = try MappedFile(path: path)
        return Data(file.bytes)
    }
}

extension HuggingFaceDirectory: TensorSource {
    func shape(of name: String) -> [Int]? { shardOfTensor[name].flatMap { shards[$0].tensors[name]?.shape } }
    func loadF32(_ name: String) throws(ModelLoadError) -> [Float] { try tensorF32(named: name) }
}

private struct SafeTensorsIndex: Decodable {
    let weightMap: [String: String]
    enum CodingKeys: String, CodingKey { case weightMap = "weight_map" }
}

/// The `config.json` fields the engine uses, named as transformers names them.
struct HuggingFaceConfig: Decodable {
    struct RopeScaling: Decodable {
        let ropeType: String?
        let type: String?
        let factor: Double?
        let lowFreqFactor: Double?
        let highFreqFactor: Double?
        let originalMaxPositionEmbeddings: Int?
        enum CodingKeys: String, CodingKey {
            case ropeType = "rope_type", type, factor
            case lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
            case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        }
    }

    let modelType: String?
    let nameOrPath: String?
    let vocabSize: Int?
    let hiddenSize: Int?
    let intermediateSize: Int?
    let numHiddenLayers: Int?
    let numAttentionHeads: Int?
    let numKeyValueHeads: Int?
    let headDim: Int?
    let rmsNormEps: Double?
    let ropeTheta: Double?
    let ropeScaling: RopeScaling?
    let tieWordEmbeddings: Bool?
    let maxPositionEmbeddings: Int?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", nameOrPath = "_name_or_path", vocabSize = "vocab_size"
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeScaling = "rope_scaling", tieWordEmbeddings = "tie_word_embeddings"
        case maxPositionEmbeddings = "max_position_embeddings"
    }

    /// Missing optional fields take transformers' defaults (eps 1e-6, theta 10000, KV heads = heads,
    /// head_dim = hidden / heads). `tie_word_embeddings` defaults to whether `lm_head.weight` is absent.
    func modelConfig(hasOutputProjection: Bool) throws(ModelLoadError) -> ModelConfig {
        guard let modelType else { throw .missingMetadata(key: "model_type") }
        guard let architecture = Architecture(rawValue: modelType) else { throw .unsupportedArchitecture(name: modelType) }
        func required(_ value: Int?, _ key: String) throws(ModelLoadError) -> Int {
            guard let value else { throw .missingMetadata(key: key) }
            return value
        }
        let hidden = try required(hiddenSize, "hidden_size")
        let heads = try required(numAttentionHeads, "num_attention_heads")
        guard heads > 0 else { throw .invalidMetadata(key: "num_attention_heads", detail: "must be positive, is \(heads)") }
        let config = ModelConfig(
            architecture: architecture, vocabSize: try required(vocabSize, "vocab_size"), hiddenSize: hidden,
            intermediateSize: try required(intermediateSize, "intermediate_size"),
            layerCount: try required(numHiddenLayers, "num_hidden_layers"),
            headCount: heads, kvHeadCount: numKeyValueHeads ?? heads, headDim: headDim ?? hidden / heads,
            rmsNormEps: Float(rmsNormEps ?? 1e-6), ropeTheta: Float(ropeTheta ?? 10_000),
            ropeScaling: try llama3Scaling(),
            maxPositionEmbeddings: try required(maxPositionEmbeddings, "max_position_embeddings"),
            tieWordEmbeddings: tieWordEmbeddings ?? !hasOutputProjection)
        try WeightAssembler.validate(config)
        return config
    }

    private func llama3Scaling() throws(ModelLoadError) -> Llama3RopeScaling? {
        guard let ropeScaling else { return nil }
        let kind = ropeScaling.ropeType ?? ropeScaling.type ?? "default"
        if kind == "default" { return nil }
        guard kind == "llama3" else {
            throw .invalidMetadata(key: "rope_scaling", detail: "RoPE scaling '\(kind)' is not supported (only llama3)")
        }
        guard let factor = ropeScaling.factor, let low = ropeScaling.lowFreqFactor, let high = ropeScaling.highFreqFactor,
              let original = ropeScaling.originalMaxPositionEmbeddings else {
            throw .invalidMetadata(key: "rope_scaling", detail: "llama3 scaling needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings")
        }
        guard factor >= 1, low > 0, high > low, original > 0 else {
            throw .invalidMetadata(key: "rope_scaling", detail: "invalid llama3 parameters (factor \(factor), low \(low), high \(high), original \(original))")
        }
        return Llama3RopeScaling(
            factor: Float(factor), lowFreqFactor: Float(low), highFreqFactor: Float(high),
            originalMaxPositionEmbeddings: original)
    }
}
