import CondenseTensor
import Foundation

extension PEFTAdapter {
    /// Reads `adapter_config.json` and `adapter_model.safetensors` (F32, F16 or BF16 tensors) from `directory`.
    /// Tensor names may use the `base_model.model.model.layers` (from a `*ForCausalLM`) or the
    /// `base_model.model.layers` (from a bare `AutoModel`) prefix, with or without a `.default` segment.
    /// An rsLoRA adapter keeps `useRSLoRA`, so `configuration.scaling` is alpha / √r.
    public static func read(from directory: String) throws(AdapterError) -> PEFTAdapter {
        let configurationPath = join(directory, configurationFile)
        let weightsPath = join(directory, weightsFile)
        guard FileManager.default.fileExists(atPath: configurationPath) else { throw .missingFile(path: configurationPath) }
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            let pickled = join(directory, pickledWeightsFile)
            if FileManager.default.fileExists(atPath: pickled) { throw .onlySafeTensorsSupported(path: pickled) }
            throw .missingFile(path: weightsPath)
        }
        let file = try ConfigurationFile.read(path: configurationPath)

        let tensors: SafeTensorsFile
        do { tensors = try SafeTensorsFile(path: weightsPath) } catch {
            throw .unreadableTensors(path: weightsPath, detail: "\(error)")
        }
        var factors: [Int: [Module: (a: Matrix?, b: Matrix?)]] = [:]
        var prefix = causalLMPrefix
        for name in tensors.tensors.keys.sorted() {
            guard let parsed = parseTensorName(name) else { throw .unexpectedTensor(path: weightsPath, tensor: name) }
            prefix = parsed.prefix
            if let listed = file.targetModules, !listed.contains(parsed.module) {
                throw .invalidTensor(path: weightsPath, tensor: name, detail: "adapts \(parsed.module.rawValue), which target_modules does not list")
            }
            let matrix = try loadMatrix(name, from: tensors, rank: file.rank, factor: parsed.factor)
            var entry = factors[parsed.layer, default: [:]][parsed.module] ?? (nil, nil)
            switch parsed.factor {
            case .a where entry.a == nil: entry.a = matrix
            case .b where entry.b == nil: entry.b = matrix
            case .a, .b: throw .invalidTensor(path: weightsPath, tensor: name, detail: "is stored twice (under two names)")
            }
            factors[parsed.layer, default: [:]][parsed.module] = entry
        }
        guard let lastLayer = factors.keys.max() else {
            throw .unreadableTensors(path: weightsPath, detail: "the file holds no LoRA tensors")
        }
        // Modules of a pattern-valued (or absent) target_modules are those the tensors adapt.
        let modules = file.targetModules ?? Array(Set(factors.values.flatMap(\.keys))).sorted()
        var layers: [[Module: Factors]] = []
        for layer in 0...lastLayer {
            var adapted: [Module: Factors] = [:]
            for module in modules {
                let entry = factors[layer]?[module]
                guard let a = entry?.a else {
                    throw .missingTensor(path: weightsPath, tensor: tensorName(prefix: prefix, layer: layer, module: module, factor: .a))
                }
                guard let b = entry?.b else {
                    throw .missingTensor(path: weightsPath, tensor: tensorName(prefix: prefix, layer: layer, module: module, factor: .b))
                }
                adapted[module] = Factors(a: a, b: b)
            }
            layers.append(adapted)
        }
        let configuration = Configuration(
            rank: file.rank, alpha: file.alpha, dropout: file.dropout, targetModules: modules, useRSLoRA: file.useRSLoRA,
            baseModel: file.baseModel, taskType: file.taskType)
        return PEFTAdapter(configuration: configuration, layers: layers)
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (F32, PEFT's `*ForCausalLM` names) into
    /// `directory`, creating it if needed. Each file is replaced atomically.
    public func write(to directory: String) throws(AdapterError) {
        try validateStructure()
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw .writeFailed(path: directory, detail: error.localizedDescription)
        }
        var tensors: [SafeTensorsWriter.Tensor] = []
        for (layer, modules) in layers.enumerated() {
            for (module, factors) in modules {
                for (factor, matrix) in [(Factor.a, factors.a), (.b, factors.b)] {
                    tensors.append(.init(name: Self.tensorName(layer: layer, module: module, factor: factor),
                                         shape: [matrix.rows, matrix.cols], values: matrix.data))
                }
            }
        }
        let weightsPath = Self.join(directory, Self.weightsFile)
        do {
            // "format": "pt" is what PEFT and transformers write and expect.
            try SafeTensorsWriter.write(tensors, metadata: ["format": "pt"], to: weightsPath)
        } catch {
            throw .writeFailed(path: weightsPath, detail: "\(error)")
        }
        let configurationPath = Self.join(directory, Self.configurationFile)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            let json = try encoder.encode(ConfigurationFile(configuration))
            try json.write(to: URL(fileURLWithPath: configurationPath), options: .atomic)
        } catch {
            throw .writeFailed(path: configurationPath, detail: error.localizedDescription)
        }
    }

    private static func loadMatrix(_ name: String, from file: SafeTensorsFile, rank: Int, factor: Factor) throws(AdapterError) -> Matrix {
        guard let info = file.tensors[name] else { throw .missingTensor(path: file.path, tensor: name) }
        guard info.shape.count == 2 else {
            throw .invalidTensor(path: file.path, tensor: name, detail: "has shape \(info.shape), a LoRA factor is 2-dimensional")
        }
        let rows = info.shape[0], cols = info.shape[1]
        switch factor {
        case .a where rows != rank:
            throw .invalidTensor(path: file.path, tensor: name, detail: "has shape \(info.shape): lora_A needs \(rank) rows (r = \(rank))")
        case .b where cols != rank:
            throw .invalidTensor(path: file.path, tensor: name, detail: "has shape \(info.shape): lora_B needs \(rank) columns (r = \(rank))")
        case .a, .b: break
        }
        do {
            return Matrix(rows: rows, cols: cols, data: try file.tensorF32(named: name))
        } catch let error {
            if case .unsupportedTensorType(_, let dtype) = error {
                throw .invalidTensor(path: file.path, tensor: name, detail: "has dtype \(dtype) (supported: F32, F16, BF16)")
            }
            throw .unreadableTensors(path: file.path, detail: "\(error)")
        }
    }

    static func join(_ directory: String, _ file: String) -> String {
        directory.hasSuffix("/") ? directory + file : directory + "/" + file
    }
}

/// The fields of PEFT's `adapter_config.json` (a `LoraConfig`) that matter to the engine.
private struct ConfigurationFile {
    var rank: Int
    var alpha: Float
    var dropout: Float
    /// nil when the file gives a regular expression (or nothing): the tensors then say which modules are adapted.
    var targetModules: [PEFTAdapter.Module]?
    var useRSLoRA: Bool
    var baseModel: String?
    var taskType: String?

    init(_ configuration: PEFTAdapter.Configuration) {
        rank = configuration.rank
        alpha = configuration.alpha
        dropout = configuration.dropout
        targetModules = configuration.targetModules
        useRSLoRA = configuration.useRSLoRA
        baseModel = configuration.baseModel
        taskType = configuration.taskType
    }

    static func read(path: String) throws(AdapterError) -> ConfigurationFile {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .invalidConfiguration(path: path, detail: error.localizedDescription)
        }
        let raw: RawConfiguration
        do { raw = try JSONDecoder().decode(RawConfiguration.self, from: data) } catch {
            throw .invalidConfiguration(path: path, detail: SafeTensorsFile.describe(error))
        }
        return try ConfigurationFile(raw, path: path)
    }

    private init(_ raw: RawConfiguration, path: String) throws(AdapterError) {
        func invalid(_ detail: String) -> AdapterError { .invalidConfiguration(path: path, detail: detail) }
        func unsupported(_ detail: String) -> AdapterError { .unsupportedConfiguration(path: path, detail: detail) }
        guard let peftType = raw.peftType else { throw invalid("peft_type is missing") }
        guard peftType == "LORA" else { throw unsupported("peft_type is \(peftType), only LORA is supported") }
        guard let rank = raw.rank else { throw invalid("r is missing") }
        guard rank > 0 else { throw invalid("r is \(rank), must be positive") }
        guard let alpha = raw.alpha else { throw invalid("lora_alpha is missing") }
        guard alpha.isFinite, alpha > 0 else { throw invalid("lora_alpha is \(alpha), must be positive") }
        let dropout = raw.dropout ?? 0
        guard dropout >= 0, dropout < 1 else { throw invalid("lora_dropout is \(dropout), must be in [0, 1)") }
        if let bias = raw.bias, bias != "none" { throw unsupported("bias is \"\(bias)\", only \"none\" is supported") }
        if raw.fanInFanOut == true { throw unsupported("fan_in_fan_out is true (Conv1D weights); Llama projections are Linear") }
        if raw.useDoRA == true { throw unsupported("use_dora is true; DoRA is not supported") }
        if raw.loraBias == true { throw unsupported("lora_bias is true; LoRA bias terms are not supported") }
        if let pattern = raw.rankPattern, !pattern.isEmpty { throw unsupported("rank_pattern is not empty; per-module ranks are not supported") }
        if let pattern = raw.alphaPattern, !pattern.isEmpty { throw unsupported("alpha_pattern is not empty; per-module alphas are not supported") }
        if raw.hasLayersToTransform { throw unsupported("layers_to_transform is set; adapters of some layers only are not supported") }
        if raw.hasLayerReplication { throw unsupported("layer_replication is set; it is not supported") }
        if let modules = raw.modulesToSave, !modules.isEmpty {
            throw unsupported("modules_to_save \(modules) is set; only LoRA factors are supported")
        }
        var targets: [PEFTAdapter.Module]?
        if case .names(let names) = raw.targetModules {
            var modules: [PEFTAdapter.Module] = []
            for name in names {
                guard let module = PEFTAdapter.Module(rawValue: name) else {
                    throw unsupported("target module '\(name)' is not a Llama projection (supported: "
                                      + PEFTAdapter.Module.allCases.map(\.rawValue).joined(separator: ", ") + ")")
                }
                modules.append(module)
            }
            guard !modules.isEmpty else { throw invalid("target_modules is empty") }
            targets = Array(Set(modules)).sorted()
        }
        self.rank = rank
        self.alpha = Float(alpha)
        self.dropout = Float(dropout)
        targetModules = targets
        useRSLoRA = raw.useRSLoRA ?? false
        baseModel = raw.baseModel
        taskType = raw.taskType
    }
}

extension ConfigurationFile: Encodable {
    private enum CodingKeys: String, CodingKey {
        case peftType = "peft_type", rank = "r", alpha = "lora_alpha", dropout = "lora_dropout"
        case targetModules = "target_modules", bias, useRSLoRA = "use_rslora", useDoRA = "use_dora"
        case fanInFanOut = "fan_in_fan_out", baseModel = "base_model_name_or_path", taskType = "task_type"
        case inferenceMode = "inference_mode", rankPattern = "rank_pattern", alphaPattern = "alpha_pattern"
        case modulesToSave = "modules_to_save", layersToTransform = "layers_to_transform", initWeights = "init_lora_weights"
    }

    /// The keys PEFT writes for a plain LoRA adapter; the ones left out take LoraConfig's defaults when PEFT loads it.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode("LORA", forKey: .peftType)
        try container.encode(rank, forKey: .rank)
        try container.encode(alpha, forKey: .alpha)
        try container.encode(dropout, forKey: .dropout)
        try container.encode((targetModules ?? []).map(\.rawValue), forKey: .targetModules)
        try container.encode("none", forKey: .bias)
        try container.encode(useRSLoRA, forKey: .useRSLoRA)
        try container.encode(false, forKey: .useDoRA)
        try container.encode(false, forKey: .fanInFanOut)
        try container.encode(baseModel, forKey: .baseModel)
        try container.encode(taskType, forKey: .taskType)
        try container.encode(true, forKey: .inferenceMode)
        try container.encode(true, forKey: .initWeights)
        try container.encode([String: Int](), forKey: .rankPattern)
        try container.encode([String: Int](), forKey: .alphaPattern)
        try container.encodeNil(forKey: .modulesToSave)
        try container.encodeNil(forKey: .layersToTransform)
    }
}

/// adapter_config.json as written, every field optional (validated by `ConfigurationFile`).
private struct RawConfiguration: Decodable {
    /// `target_modules` is a list of module names, or one string that PEFT matches as a regular expression.
    enum TargetModules: Decodable {
        case names([String])
        case pattern(String)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let names = try? container.decode([String].self) {
                self = .names(names)
            } else {
                self = .pattern(try container.decode(String.self))
            }
        }
    }

    let peftType: String?
    let rank: Int?
    let alpha: Double?
    let dropout: Double?
    let targetModules: TargetModules?
    let bias: String?
    let useRSLoRA: Bool?
    let useDoRA: Bool?
    let loraBias: Bool?
    let fanInFanOut: Bool?
    let baseModel: String?
    let taskType: String?
    let rankPattern: [String: Double]?
    let alphaPattern: [String: Double]?
    let modulesToSave: [String]?
    /// Whether the key holds a value other than null (an int or a list of ints).
    let hasLayersToTransform: Bool
    let hasLayerReplication: Bool

    private enum CodingKeys: String, CodingKey {
        case peftType = "peft_type", rank = "r", alpha = "lora_alpha", dropout = "lora_dropout"
        case targetModules = "target_modules", bias, useRSLoRA = "use_rslora", useDoRA = "use_dora", loraBias = "lora_bias"
        case fanInFanOut = "fan_in_fan_out", baseModel = "base_model_name_or_path", taskType = "task_type"
        case rankPattern = "rank_pattern", alphaPattern = "alpha_pattern", modulesToSave = "modules_to_save"
        case layersToTransform = "layers_to_transform", layerReplication = "layer_replication"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        peftType = try container.decodeIfPresent(String.self, forKey: .peftType)
        rank = try container.decodeIfPresent(Int.self, forKey: .rank)
        alpha = try container.decodeIfPresent(Double.self, forKey: .alpha)
        dropout = try container.decodeIfPresent(Double.self, forKey: .dropout)
        targetModules = try container.decodeIfPresent(TargetModules.self, forKey: .targetModules)
        bias = try container.decodeIfPresent(String.self, forKey: .bias)
        useRSLoRA = try container.decodeIfPresent(Bool.self, forKey: .useRSLoRA)
        useDoRA = try container.decodeIfPresent(Bool.self, forKey: .useDoRA)
        loraBias = try container.decodeIfPresent(Bool.self, forKey: .loraBias)
        fanInFanOut = try container.decodeIfPresent(Bool.self, forKey: .fanInFanOut)
        baseModel = try container.decodeIfPresent(String.self, forKey: .baseModel)
        taskType = try container.decodeIfPresent(String.self, forKey: .taskType)
        rankPattern = try container.decodeIfPresent([String: Double].self, forKey: .rankPattern)
        alphaPattern = try container.decodeIfPresent([String: Double].self, forKey: .alphaPattern)
        modulesToSave = try container.decodeIfPresent([String].self, forKey: .modulesToSave)
        hasLayersToTransform = try container.contains(.layersToTransform) && !container.decodeNil(forKey: .layersToTransform)
        hasLayerReplication = try container.contains(.layerReplication) && !container.decodeNil(forKey: .layerReplication)
    }
}
