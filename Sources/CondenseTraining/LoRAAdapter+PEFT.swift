import CondenseModel
import CondenseTensor

/// Conversion between the trainer's flat adapter and Hugging Face PEFT's adapter files. The factors are stored
/// as they are: a slot's A [rank x in] and B [out x rank] are row-major, as PEFT's lora_A/lora_B weights.
extension LoRAAdapter {
    /// Writes `adapter_config.json` and `adapter_model.safetensors` into `directory` (created if needed), loadable
    /// with `PeftModel.from_pretrained` on top of `baseModel` and with `condense ... --adapter`.
    public func writePEFT(to directory: String, baseModel: String) throws(TrainingError) {
        do { try peftAdapter(baseModel: baseModel).write(to: directory) } catch { throw .adapterFile(error) }
    }

    /// Reads a PEFT LoRA adapter for `model`; its LoRAConfiguration comes from adapter_config.json.
    /// rsLoRA scaling (alpha / √r) is kept by storing alpha · √r as alpha, since the trainer scales by alpha / r.
    public static func readPEFT(from directory: String, model: ModelConfig) throws(TrainingError) -> LoRAAdapter {
        let peft: PEFTAdapter
        do { peft = try PEFTAdapter.read(from: directory) } catch { throw .adapterFile(error) }
        return try LoRAAdapter(peft: peft, model: model)
    }

    /// The adapter in PEFT's form.
    public func peftAdapter(baseModel: String?) -> PEFTAdapter {
        let lora = layout.configuration
        let configuration = PEFTAdapter.Configuration(
            rank: lora.rank, alpha: lora.alpha, dropout: lora.dropout, targetModules: lora.targets.map(\.peftModule),
            baseModel: baseModel)
        var layers = [[PEFTAdapter.Module: PEFTAdapter.Factors]](repeating: [:], count: layout.layerCount)
        for slot in layout.slots {
            let a = Matrix(rows: slot.rank, cols: slot.inFeatures, data: Array(parameters[slot.aOffset..<slot.bOffset]))
            let b = Matrix(rows: slot.outFeatures, cols: slot.rank, data: Array(parameters[slot.bOffset..<(slot.bOffset + slot.bCount)]))
            layers[slot.layer][slot.target.peftModule] = PEFTAdapter.Factors(a: a, b: b)
        }
        return PEFTAdapter(configuration: configuration, layers: layers)
    }

    /// The trainer's adapter holding the factors of `peft`, which must fit `model`.
    public init(peft: PEFTAdapter, model: ModelConfig) throws(TrainingError) {
        do { try peft.validate(against: model) } catch { throw .adapterFile(error) }
        let source = peft.configuration
        let alpha = source.useRSLoRA ? source.alpha * Float(source.rank).squareRoot() : source.alpha
        let configuration = LoRAConfiguration(
            rank: source.rank, alpha: alpha, dropout: source.dropout, targets: source.targetModules.map(LoRATarget.init))
        try configuration.validate()
        let layout = LoRALayout(configuration: configuration, model: model)
        var parameters = [Float](repeating: 0, count: layout.parameterCount)
        for slot in layout.slots {
            guard let factors = peft.layers[slot.layer][slot.target.peftModule] else {
                throw .adapterMismatch("layer \(slot.layer) has no factors for \(slot.target.moduleName)")
            }
            parameters.replaceSubrange(slot.aOffset..<slot.bOffset, with: factors.a.data)
            parameters.replaceSubrange(slot.bOffset..<(slot.bOffset + slot.bCount), with: factors.b.data)
        }
        try self.init(layout: layout, parameters: parameters)
    }
}

extension LoRATarget {
    /// The same projection in PEFT's naming.
    var peftModule: PEFTAdapter.Module {
        switch self {
        case .q: .q
        case .k: .k
        case .v: .v
        case .o: .o
        case .gate: .gate
        case .up: .up
        case .down: .down
        }
    }

    init(_ module: PEFTAdapter.Module) {
        self = switch module {
        case .q: .q
        case .k: .k
        case .v: .v
        case .o: .o
        case .gate: .gate
        case .up: .up
        case .down: .down
        }
    }
}
