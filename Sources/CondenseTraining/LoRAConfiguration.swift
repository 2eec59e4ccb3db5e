/// A projection of the Llama block that can carry a LoRA adapter (PEFT's `target_modules` names).
public enum LoRATarget: String, Sendable, CaseIterable, Comparable {
    case q, k, v, o, gate, up, down

    /// The paper's choice: attention q, v, o and the whole MLP.
    public static let defaultTargets: [LoRATarget] = [.q, .v, .o, .gate, .up, .down]

    /// PEFT module name, e.g. `q_proj`, `gate_proj`.
    public var moduleName: String { rawValue + "_proj" }

    /// Position in a block's forward order (q, k, v, o, gate, up, down).
    var order: Int {
        switch self {
        case .q: 0
        case .k: 1
        case .v: 2
        case .o: 3
        case .gate: 4
        case .up: 5
        case .down: 6
        }
    }

    public static func < (lhs: LoRATarget, rhs: LoRATarget) -> Bool { lhs.order < rhs.order }
}

/// LoRA hyperparameters: ΔW = (alpha / rank) · B·A with A [rank x in], B [out x rank].
public struct LoRAConfiguration: Sendable, Equatable {
    public var rank: Int
    public var alpha: Float
    /// Dropout probability on the adapter's input path (the frozen path sees the undropped input).
    public var dropout: Float
    /// Adapted projections, kept sorted and unique.
    public var targets: [LoRATarget]

    /// The reference code's defaults: r = 64, alpha = 16, dropout 0.05, q/v/o/gate/up/down.
    public init(rank: Int = 64, alpha: Float = 16, dropout: Float = 0.05, targets: [LoRATarget] = LoRATarget.defaultTargets) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targets = Array(Set(targets)).sorted()
    }

    /// alpha / rank, the factor on B·A.
    public var scaling: Float { alpha / Float(rank) }

    func validate() throws(TrainingError) {
        guard rank > 0 else { throw .invalidConfiguration("LoRA rank \(rank) must be positive") }
        guard alpha.isFinite, alpha > 0 else { throw .invalidConfiguration("LoRA alpha \(alpha) must be positive") }
        guard dropout >= 0, dropout < 1 else { throw .invalidConfiguration("LoRA dropout \(dropout) must be in [0, 1)") }
        guard !targets.isEmpty else { throw .invalidConfiguration("no LoRA target modules") }
    }
}
