import CondenseTokenizer
import Foundation

/// What `condense info` reports about a loaded model.
public struct ModelSummary: Sendable, Equatable {
    public var sourcePath: String
    /// "gguf" or "safetensors".
    public var format: String
    public var architecture: Architecture
    /// `general.name` for GGUF; `_name_or_path` or the directory name for Hugging Face directories.
    public var modelName: String?
    /// Elements over all tensors in the file(s), including ones the engine does not load.
    public var parameterCount: Int
    /// Number of tensors per storage type, e.g. ["Q4_1": 210, "Q8_0": 1, "F32": 61].
    public var tensorTypeCounts: [String: Int]
    /// Bytes of all files the weights were read from.
    public var fileSize: Int

    public init(
        sourcePath: String, format: String, architecture: Architecture, modelName: String?,
        parameterCount: Int, tensorTypeCounts: [String: Int], fileSize: Int
    ) {
        self.sourcePath = sourcePath
        self.format = format
        self.architecture = architecture
        self.modelName = modelName
        self.parameterCount = parameterCount
        self.tensorTypeCounts = tensorTypeCounts
        self.fileSize = fileSize
    }
}

/// A model ready for the engine: F32 weights in HF layout, its tokenizer, and a description.
public struct LoadedModel: Sendable {
    public var weights: ModelWeights
    public var tokenizer: TokenizerSpec
    public var summary: ModelSummary

    public init(weights: ModelWeights, tokenizer: TokenizerSpec, summary: ModelSummary) {
        self.weights = weights
        self.tokenizer = tokenizer
        self.summary = summary
    }
}

public enum ModelLoader {
    public static let tokenizerFile = "tokenizer.json"
    public static let tokenizerConfigFile = "tokenizer_config.json"

    /// Loads a `.gguf` file or a Hugging Face directory (config.json + safetensors + tokenizer.json).
    public static func load(path: String) throws(ModelLoadError) -> LoadedModel {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .fileNotFound(path: path)
        }
        return isDirectory.boolValue ? try loadHuggingFace(directory: path) : try loadGGUF(path: path)
    }

    public static func loadGGUF(path: String) throws(ModelLoadError) -> LoadedModel {
        let file = try GGUFFile(path: path)
        let weights = try file.modelWeights()
        var typeCounts: [String: Int] = [:]
        for info in file.tensorInfos { typeCounts[info.type.description, default: 0] += 1 }
        let summary = ModelSummary(
            sourcePath: path, format: "gguf", architecture: weights.config.architecture,
            modelName: try file.string("general.name"),
            parameterCount: file.tensorInfos.reduce(0) { $0 + $1.elementCount },
            tensorTypeCounts: typeCounts, fileSize: file.fileSize)
        return LoadedModel(weights: weights, tokenizer: try file.tokenizerSpec(), summary: summary)
    }

    public static func loadHuggingFace(directory: String) throws(ModelLoadError) -> LoadedModel {
        let model = try HuggingFaceDirectory(path: directory)
        let weights = try model.modelWeights()
        let tensors = model.tensorInfos
        var typeCounts: [String: Int] = [:]
        for info in tensors { typeCounts[info.dtype, default: 0] += 1 }
        let summary = ModelSummary(
            sourcePath: directory, format: "safetensors", architecture: weights.config.architecture,
            modelName: model.modelName,
            parameterCount: tensors.reduce(0) { $0 + $1.elementCount },
            tensorTypeCounts: typeCounts, fileSize: model.shards.reduce(0) { $0 + $1.fileSize })
        return LoadedModel(weights: weights, tokenizer: try huggingFaceTokenizer(directory: directory), summary: summary)
    }

    /// `tokenizer.json` (required) and `tokenizer_config.json` (optional) from a model directory.
    static func huggingFaceTokenizer(directory: String) throws(ModelLoadError) -> TokenizerSpec {
        let tokenizerPath = HuggingFaceDirectory.join(directory, tokenizerFile)
        let configPath = HuggingFaceDirectory.join(directory, tokenizerConfigFile)
        let tokenizerJSON = [UInt8](try HuggingFaceDirectory.readFile(tokenizerPath))
        let configJSON = FileManager.default.fileExists(atPath: configPath)
            ? [UInt8](try HuggingFaceDirectory.readFile(configPath)) : nil
        do {
            return try TokenizerSpec.fromHuggingFace(tokenizerJSON: tokenizerJSON, tokenizerConfigJSON: configJSON)
        } catch {
            throw .invalidTokenizer(detail: "\(tokenizerPath): \(error)")
        }
    }
}
