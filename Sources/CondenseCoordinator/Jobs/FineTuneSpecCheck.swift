import CondenseEmbedding
import CondenseRPC
import CondenseWire

/// The checks CreateFineTuneJob makes before a job exists (Protos/services.md, "Hyperparameters"):
/// anything wrong is INVALID_ARGUMENT and no job is created.
enum FineTuneSpecCheck {
    static let defaultBatchSize: UInt32 = 120
    static let knownTargetModules: Set<String> = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    static func validate(_ spec: FineTuneJobSpec) throws(RPCError) {
        let parameters = spec.hyperparameters ?? Hyperparameters()
        func invalid(_ message: String) -> RPCError { RPCError(code: .invalidArgument, message: message) }
        if case .steps(0) = parameters.duration { throw invalid("steps must be positive") }
        if case .epochs(0) = parameters.duration { throw invalid("epochs must be positive") }
        guard parameters.batchSize == 0 || parameters.batchSize >= 2 else {
            throw invalid("batch_size \(parameters.batchSize): in-batch negatives need at least 2 pairs")
        }
        guard parameters.learningRate.isFinite, parameters.learningRate >= 0 else {
            throw invalid("learning_rate \(parameters.learningRate) must be positive")
        }
        guard parameters.loraRank <= 256 else { throw invalid("lora_rank \(parameters.loraRank) must be 1...256") }
        guard parameters.loraAlpha.isFinite, parameters.loraAlpha >= 0 else {
            throw invalid("lora_alpha \(parameters.loraAlpha) must be positive")
        }
        if let dropout = parameters.loraDropout, !(dropout >= 0 && dropout < 1) {
            throw invalid("lora_dropout \(dropout) must be in [0, 1)")
        }
        if let unknown = parameters.targetModules.first(where: { !knownTargetModules.contains($0) }) {
            throw invalid("unknown target module '\(unknown)'; known: \(knownTargetModules.sorted().joined(separator: ", "))")
        }
        guard parameters.temperature.isFinite, parameters.temperature >= 0 else {
            throw invalid("temperature \(parameters.temperature) must be positive")
        }
        guard parameters.margin.isFinite else { throw invalid("margin must be finite") }
        do {
            switch parameters.prompt {
            case .promptName(let name): _ = try PromptTemplate(nameOrTemplate: name)
            case .promptTemplate(let template): _ = try PromptTemplate(nameOrTemplate: template)
            case nil: break
            }
        } catch {
            throw invalid(error.description)
        }
        if !spec.adapterID.isEmpty { try ArtifactStore.checkID(spec.adapterID, kind: "adapter") }
    }

    /// Optimizer steps of the job: `steps`, or ceil(pairs / batch) per epoch (1 epoch by default).
    static func totalSteps(_ spec: FineTuneJobSpec, pairCount: Int) -> UInt32 {
        let parameters = spec.hyperparameters ?? Hyperparameters()
        let batch = Int(parameters.batchSize == 0 ? defaultBatchSize : parameters.batchSize)
        let perEpoch = max(1, (pairCount + batch - 1) / batch)
        switch parameters.duration {
        case .steps(let steps): return steps
        case .epochs(let epochs): return UInt32(clamping: perEpoch * Int(epochs))
        case nil: return UInt32(clamping: perEpoch)
        }
    }
}
