import CondenseTensor

/// A LoRA adapter as Hugging Face PEFT stores it: `adapter_config.json` (hyperparameters) and
/// `adapter_model.safetensors` with, per adapted projection of each layer, lora_A [r x in] and lora_B [out x r]
/// under PEFT's names (`base_model.model.layers.{i}.self_attn.q_proj.lora_A.weight`, ...).
/// The adapted weight is W + scaling · B·A with scaling = alpha / r, or alpha / √r with rsLoRA.
///
/// Every layer `0..<layerCount` carries every module of `configuration.targetModules` (adapters restricted to
/// some layers with `layers_to_transform` are refused when read).
public struct PEFTAdapter: Sendable, Equatable {
    /// A projection of the Llama block, by its module name in transformers' modeling code.
    public enum Module: String, Sendable, CaseIterable, Comparable {
        case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj", gate = "gate_proj", up = "up_proj", down = "down_proj"

        /// The submodule of a decoder layer that holds the projection.
        public var parent: String {
            switch self {
            case .q, .k, .v, .o: "self_attn"
            case .gate, .up, .down: "mlp"
            }
        }

        /// (in, out) features of the projection in a model.
        public func features(in config: ModelConfig) -> (inFeatures: Int, outFeatures: Int) {
            let query = config.headCount * config.headDim, keyValue = config.kvHeadCount * config.headDim
            return switch self {
            case .q: (config.hiddenSize, query)
            case .k, .v: (config.hiddenSize, keyValue)
            case .o: (query, config.hiddenSize)
            case .gate, .up: (config.hiddenSize, config.intermediateSize)
            case .down: (config.intermediateSize, config.hiddenSize)
            }
        }

        /// The weight it adapts in `LayerWeights`.
        var weight: WritableKeyPath<LayerWeights, Matrix> {
            switch self {
            case .q: \.wq
            case .k: \.wk
            case .v: \.wv
            case .o: \.wo
            case .gate: \.wGate
            case .up: \.wUp
            case .down: \.wDown
            }
        }

        public static func < (lhs: Module, rhs: Module) -> Bool {
            (allCases.firstIndex(of: lhs) ?? 0) < (allCases.firstIndex(of: rhs) ?? 0)
        }
    }

    /// The two LoRA factors of one projection.
    public struct Factors: Sendable, Equatable {
        /// [rank x in]
        public var a: Matrix
        /// [out x rank]
        public var b: Matrix

        public init(a: Matrix, b: Matrix) {
            self.a = a
            self.b = b
        }
    }

    /// What `adapter_config.json` says about the adapter.
    public struct Configuration: Sendable, Equatable {
        /// `r`.
        public var rank: Int
        /// `lora_alpha`.
        public var alpha: Float
        /// `lora_dropout` (training only; inference ignores it).
        public var dropout: Float
        /// `target_modules`, sorted and unique.
        public var targetModules: [Module]
        /// `use_rslora`: scaling alpha / √r instead of alpha / r.
        public var useRSLoRA: Bool
        /// `base_model_name_or_path`.
        public var baseModel: String?
        /// `task_type`, e.g. FEATURE_EXTRACTION.
        public var taskType: String?

        public init(
            rank: Int, alpha: Float, dropout: Float, targetModules: [Module], useRSLoRA: Bool = false,
            baseModel: String? = nil, taskType: String? = PEFTAdapter.featureExtractionTask
        ) {
            self.rank = rank
            self.alpha = alpha
            self.dropout = dropout
            self.targetModules = Array(Set(targetModules)).sorted()
            self.useRSLoRA = useRSLoRA
            self.baseModel = baseModel
            self.taskType = taskType
        }

        /// The factor on B·A.
        public var scaling: Float { useRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }
    }

    public enum Factor: String, Sendable { case a = "A", b = "B" }

    /// PEFT's task type for an encoder of texts into vectors.
    public static let featureExtractionTask = "FEATURE_EXTRACTION"
    public static let configurationFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"
    /// The pickled PyTorch format, recognised only to say it is unsupported.
    public static let pickledWeightsFile = "adapter_model.bin"

    public var configuration: Configuration
    /// `layers[i][module]`: the factors of `module` in decoder layer i.
    public var layers: [[Module: Factors]]

    public init(configuration: Configuration, layers: [[Module: Factors]]) {
        self.configuration = configuration
        self.layers = layers
    }

    public var layerCount: Int { layers.count }

    /// PEFT's name of a factor in a wrapped `AutoModel` (the bare decoder, as PEFT saves it, adapter name
    /// removed): the model an embedding user loads, and what PEFT's feature-extraction task wraps. PEFT
    /// matches names exactly, so a `*ForCausalLM`'s `model.model.layers` names would be silently ignored by
    /// `PeftModel.from_pretrained(AutoModel...)` (checked by scripts/test-peft-compat.py); reading accepts both.
    public static func tensorName(layer: Int, module: Module, factor: Factor) -> String {
        tensorName(prefix: baseModelPrefix, layer: layer, module: module, factor: factor)
    }

    static func tensorName(prefix: String, layer: Int, module: Module, factor: Factor) -> String {
        "\(prefix)\(layer).\(module.parent).\(module.rawValue).lora_\(factor.rawValue).weight"
    }

    /// Layer-list prefixes of PEFT names: a wrapped `*ForCausalLM` (`model.model.layers`), a bare `AutoModel`.
    static let causalLMPrefix = "base_model.model.model.layers."
    static let baseModelPrefix = "base_model.model.layers."

    /// (layer, module, factor) of a PEFT tensor name, with its layer-list prefix; nil for any other name.
    /// An adapter-name segment `default` before `weight` (as in a live model's state dict) is accepted.
    static func parseTensorName(_ name: String) -> (prefix: String, layer: Int, module: Module, factor: Factor)? {
        guard let prefix = [causalLMPrefix, baseModelPrefix].first(where: { name.hasPrefix($0) }) else { return nil }
        var parts = name.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 6, parts[4] == "default" { parts.remove(at: 4) }
        guard parts.count == 5, parts[4] == "weight",
              let layer = Int(parts[0]), layer >= 0, String(layer) == parts[0],
              let module = Module(rawValue: String(parts[2])), parts[1] == module.parent else { return nil }
        let factor: Factor
        switch parts[3] {
        case "lora_A": factor = .a
        case "lora_B": factor = .b
        default: return nil
        }
        return (prefix, layer, module, factor)
    }

    /// Checks that the adapter fits `model`: one entry per decoder layer, A [r x in] and B [out x r] for each
    /// adapted projection. Merging and conversion to a trainable adapter call this first.
    public func validate(against model: ModelConfig) throws(AdapterError) {
        guard layerCount == model.layerCount else {
            throw .layerCountMismatch(adapterLayers: layerCount, modelLayers: model.layerCount)
        }
        let rank = configuration.rank
        for (layer, modules) in layers.enumerated() {
            for module in configuration.targetModules {
                let (inFeatures, outFeatures) = module.features(in: model)
                guard let factors = modules[module] else {
                    throw .inconsistentAdapter("layer \(layer) has no factors for \(module.rawValue)")
                }
                let a = factors.a, b = factors.b
                guard a.rows == rank, a.cols == inFeatures else {
                    throw .shapeMismatch(tensor: Self.tensorName(layer: layer, module: module, factor: .a),
                                         expected: [rank, inFeatures], actual: [a.rows, a.cols])
                }
                guard b.rows == outFeatures, b.cols == rank else {
                    throw .shapeMismatch(tensor: Self.tensorName(layer: layer, module: module, factor: .b),
                                         expected: [outFeatures, rank], actual: [b.rows, b.cols])
                }
            }
        }
    }

    /// Checks what can be checked without a model: every layer holds exactly the target modules, with
    /// A of `rank` rows and B of `rank` columns.
    func validateStructure() throws(AdapterError) {
        let rank = configuration.rank
        guard rank > 0 else { throw .inconsistentAdapter("rank \(rank) must be positive") }
        guard !configuration.targetModules.isEmpty else { throw .inconsistentAdapter("no target modules") }
        guard !layers.isEmpty else { throw .inconsistentAdapter("no layers") }
        for (layer, modules) in layers.enumerated() {
            guard Set(modules.keys) == Set(configuration.targetModules) else {
                throw .inconsistentAdapter("layer \(layer) adapts \(modules.keys.sorted().map(\.rawValue)), "
                                           + "the target modules are \(configuration.targetModules.map(\.rawValue))")
            }
            for (module, factors) in modules where factors.a.rows != rank || factors.b.cols != rank {
                throw .inconsistentAdapter("\(Self.tensorName(layer: layer, module: module, factor: .a)) is "
                                           + "\(factors.a.rows)x\(factors.a.cols) and lora_B \(factors.b.rows)x\(factors.b.cols), rank is \(rank)")
            }
        }
    }
}
