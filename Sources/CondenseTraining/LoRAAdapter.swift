import CondenseModel
import CondenseTensor

/// Where each (layer, target) adapter lives in the flat parameter vector of a `LoRAAdapter`.
public struct LoRALayout: Sendable, Equatable {
    public struct Slot: Sendable, Equatable {
        public let layer: Int
        public let target: LoRATarget
        public let inFeatures: Int
        public let outFeatures: Int
        /// A [rank x inFeatures] starts here, followed by B [outFeatures x rank].
        public let aOffset: Int
        public var bOffset: Int { aOffset + aCount }
        public let rank: Int
        public var aCount: Int { rank * inFeatures }
        public var bCount: Int { outFeatures * rank }
    }

    public let configuration: LoRAConfiguration
    public let layerCount: Int
    /// Slot `layer · targets.count + t` adapts `configuration.targets[t]` of `layer`.
    public let slots: [Slot]
    public let parameterCount: Int

    public init(configuration: LoRAConfiguration, model: ModelConfig) {
        self.configuration = configuration
        layerCount = model.layerCount
        let query = model.headCount * model.headDim, keyValue = model.kvHeadCount * model.headDim
        var slots: [Slot] = []
        var offset = 0
        for layer in 0..<model.layerCount {
            for target in configuration.targets {
                let (inFeatures, outFeatures): (Int, Int) = switch target {
                case .q: (model.hiddenSize, query)
                case .k, .v: (model.hiddenSize, keyValue)
                case .o: (query, model.hiddenSize)
                case .gate, .up: (model.hiddenSize, model.intermediateSize)
                case .down: (model.intermediateSize, model.hiddenSize)
                }
                let slot = Slot(layer: layer, target: target, inFeatures: inFeatures, outFeatures: outFeatures,
                                aOffset: offset, rank: configuration.rank)
                slots.append(slot)
                offset += slot.aCount + slot.bCount
            }
        }
        self.slots = slots
        parameterCount = offset
    }

    /// The adapter of `target` in `layer`, nil when that projection is not adapted.
    public func slot(layer: Int, target: LoRATarget) -> Slot? {
        guard let index = configuration.targets.firstIndex(of: target), layer >= 0, layer < layerCount else { return nil }
        return slots[layer * configuration.targets.count + index]
    }
}

/// Trainable LoRA factors of every adapted projection, in one flat vector (optimizer-friendly).
/// Initialised as PEFT does: A ~ kaiming-uniform(a = √5) = U(−1/√in, 1/√in) from a seeded generator,
/// B = 0, so the adapted model starts equal to the base model.
public struct LoRAAdapter: Sendable, Equatable {
    public let layout: LoRALayout
    public var parameters: [Float]

    public init(layout: LoRALayout, seed: UInt64) {
        self.layout = layout
        var random = SeededRandom(seed: seed)
        var parameters = [Float](repeating: 0, count: layout.parameterCount)
        for slot in layout.slots {
            let bound = 1 / Float(slot.inFeatures).squareRoot()
            for i in slot.aOffset..<(slot.aOffset + slot.aCount) { parameters[i] = random.uniform(-bound, bound) }
        }
        self.parameters = parameters
    }

    public init(layout: LoRALayout, parameters: [Float]) throws(TrainingError) {
        guard parameters.count == layout.parameterCount else {
            throw .adapterMismatch("\(parameters.count) parameters given, the layout has \(layout.parameterCount)")
        }
        self.layout = layout
        self.parameters = parameters
    }

    /// A of `target` in `layer` as a [rank x in] matrix (a copy); nil when that projection is not adapted.
    public func a(layer: Int, target: LoRATarget) -> Matrix? {
        layout.slot(layer: layer, target: target).map { slot in
            Matrix(rows: slot.rank, cols: slot.inFeatures, data: Array(parameters[slot.aOffset..<slot.bOffset]))
        }
    }

    /// B of `target` in `layer` as an [out x rank] matrix (a copy); nil when that projection is not adapted.
    public func b(layer: Int, target: LoRATarget) -> Matrix? {
        layout.slot(layer: layer, target: target).map { slot in
            Matrix(rows: slot.outFeatures, cols: slot.rank, data: Array(parameters[slot.bOffset..<(slot.bOffset + slot.bCount)]))
        }
    }
}
