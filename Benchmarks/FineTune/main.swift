// Fine-tuning benchmark: seconds per contrastive LoRA optimizer step, peak RSS, the step's FLOPs and the
// achieved fraction of the sgemm ceiling measured in this process.
//
//   swift build -c release --product condense-bench-finetune
//   .build/release/condense-bench-finetune [--model FILE] [--sentences FILE] [--pairs N] [--steps N] [--rank R]
//
// Workload: N pairs (default 16) of consecutive sentences (2i, 2i + 1) of the sentence file, each wrapped in
// the cluster prompt and prepared as inference does (`Embedder.prepare`, mean pooling), on the default
// model (dequantised to F32) with the default training configuration (r = 64, q/v/o/gate/up/down).
// Consecutive distinct sentences keep every in-batch negative a real negative.
import CondenseEmbedding
import CondenseModel
import CondenseTensor
import CondenseTokenizer
import BenchmarkSupport
import CondenseTraining
import Foundation

struct Options {
    var model = ProcessInfo.processInfo.environment["CONDENSE_MODEL"] ?? "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    var sentences = "/work/shared/bench/sentences.txt"
    var pairs = 16
    var steps = 3
    var rank = 64

    init(arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--model": model = iterator.next() ?? model
            case "--sentences": sentences = iterator.next() ?? sentences
            case "--pairs": pairs = max(2, Int(iterator.next() ?? "") ?? pairs)
            case "--steps": steps = max(1, Int(iterator.next() ?? "") ?? steps)
            case "--rank": rank = max(1, Int(iterator.next() ?? "") ?? rank)
            default:
                print("unknown argument \(argument)")
                exit(2)
            }
        }
    }
}

/// The better of both ways to share the cores, measured now.
func sgemmCeiling() -> (wall: Double, perCPUSecond: Double) {
    let shared = sgemmGFLOPS(sideBySide: false), sideBySide = sgemmGFLOPS(sideBySide: true)
    print(String(format: "sgemm M=1024 N=1536 K=576 (best of 5 x 20 calls): one GEMM on %d threads %.1f GFLOPS, %.1f GFLOP per CPU-second; "
                 + "one single-threaded GEMM per thread side by side %.1f GFLOPS, %.1f GFLOP per CPU-second",
                 BLASRuntime.threads, shared.wall, shared.perCPUSecond, sideBySide.wall, sideBySide.perCPUSecond))
    return (max(shared.wall, sideBySide.wall), max(shared.perCPUSecond, sideBySide.perCPUSecond))
}

/// Multiply-adds ×2 of one optimizer step, by part. Attention counts the causal (visible) half only.
struct StepFLOPs {
    var frozenForward = 0.0     // x·Wᵀ of every projection
    var adapterForward = 0.0    // (x·Aᵀ)·Bᵀ
    var attentionForward = 0.0  // QKᵀ, PV
    var frozenBackward = 0.0    // G·W (input gradients; none below the first block's q/k/v)
    var adapterBackward = 0.0   // G·B, ∂B, ∂A, (G·B)·A
    var attentionBackward = 0.0 // ∂V, ∂P, ∂Q, ∂K
    var recompute = 0.0         // the forward again, when gradient caching splits the batch

    var total: Double {
        frozenForward + adapterForward + attentionForward + frozenBackward + adapterBackward + attentionBackward + recompute
    }

    init(config: ModelConfig, lora: LoRAConfiguration, lengths: [Int], microBatches: Int) {
        let hidden = Double(config.hiddenSize), intermediate = Double(config.intermediateSize)
        let query = Double(config.headCount * config.headDim), keyValue = Double(config.kvHeadCount * config.headDim)
        let tokens = Double(lengths.reduce(0, +)), layers = Double(config.layerCount), rank = Double(lora.rank)
        func shape(_ target: LoRATarget) -> (input: Double, output: Double) {
            switch target {
            case .q: (hidden, query)
            case .k, .v: (hidden, keyValue)
            case .o: (query, hidden)
            case .gate, .up: (hidden, intermediate)
            case .down: (intermediate, hidden)
            }
        }
        let perToken = LoRATarget.allCases.reduce(0.0) { $0 + 2 * shape($1).input * shape($1).output }
        let firstBlockQKV = [LoRATarget.q, .k, .v].reduce(0.0) { $0 + 2 * shape($1).input * shape($1).output }
        frozenForward = perToken * tokens * layers
        frozenBackward = (perToken * layers - firstBlockQKV) * tokens
        for target in lora.targets {
            let (input, output) = shape(target)
            adapterForward += 2 * rank * (input + output) * tokens * layers
            // G·B and ∂B (2·r·out), ∂A (2·r·in), and (G·B)·A (2·r·in) except where the input gradient is skipped.
            let skipsInput = [LoRATarget.q, .k, .v].contains(target)
            adapterBackward += 4 * rank * (input + output) * tokens * layers - (skipsInput ? 2 * rank * input * tokens : 0)
        }
        let visible = lengths.reduce(0.0) { $0 + Double($1) * Double($1 + 1) / 2 }
        attentionForward = 4 * Double(config.headDim) * visible * Double(config.headCount) * layers
        attentionBackward = 2 * attentionForward
        if microBatches > 1 { recompute = frozenForward + adapterForward + attentionForward }
    }
}

let options = Options(arguments: CommandLine.arguments)
print("BLAS: \(BLASRuntime.summary)")
print("CPU: \(ProcessInfo.processInfo.activeProcessorCount) cores")
let gemmBefore = sgemmCeiling()

let loaded = try ModelLoader.load(path: options.model)
let configuration = TrainingConfiguration(lora: LoRAConfiguration(rank: options.rank))
let pairs: [TrainingPair]
do {
    // The inference engine only serves `prepare` (tokenizer, special tokens, limits); dropped before training.
    let embedder = Embedder(model: try LlamaModel(weights: loaded.weights), tokenizer: try Tokenizer(spec: loaded.tokenizer),
                            modelName: URL(fileURLWithPath: options.model).lastPathComponent)
    let embeddingOptions = EmbeddingOptions(prompt: try PromptTemplate(nameOrTemplate: "cluster1"), pooling: configuration.pooling)
    let sentences = try String(contentsOfFile: options.sentences, encoding: .utf8).split(separator: "\n").map(String.init)
    guard sentences.count >= 2 * options.pairs else {
        print("\(options.sentences) has \(sentences.count) sentences; \(2 * options.pairs) needed")
        exit(2)
    }
    func prepared(_ index: Int) throws -> TrainingText {
        TrainingText(tokens: try embedder.prepare(sentences[index], options: embeddingOptions).tokens)
    }
    pairs = try (0..<options.pairs).map { TrainingPair(text: try prepared(2 * $0), positive: try prepared(2 * $0 + 1)) }
}
let trainer = try LlamaTrainer(weights: loaded.weights, configuration: configuration)
let lengths = pairs.flatMap { [$0.text.tokens.count, $0.positive.tokens.count] }
let tokens = lengths.reduce(0, +)
let microBatches = (tokens + configuration.microBatchTokens - 1) / configuration.microBatchTokens
print("model: \(options.model) (dequantised to F32), \(loaded.weights.config.layerCount) layers, hidden \(loaded.weights.config.hiddenSize)")
print("adapter: r=\(options.rank), targets \(configuration.lora.targets.map(\.rawValue).joined(separator: ",")), "
      + "\(trainer.adapter.layout.parameterCount) parameters; micro-batch budget \(configuration.microBatchTokens) tokens")
print("workload: \(pairs.count) pairs = \(lengths.count) texts, \(tokens) tokens per step (\(lengths.min() ?? 0)-\(lengths.max() ?? 0) per text)")

let flops = StepFLOPs(config: loaded.weights.config, lora: configuration.lora, lengths: lengths,
                      microBatches: microBatches)
print(String(format: "FLOPs per step: %.1f GFLOP = frozen forward %.1f + adapter forward %.1f + attention forward %.1f"
             + " + frozen input-gradients %.1f + adapter backward %.1f + attention backward %.1f + recompute %.1f",
             flops.total / 1e9, flops.frozenForward / 1e9, flops.adapterForward / 1e9, flops.attentionForward / 1e9,
             flops.frozenBackward / 1e9, flops.adapterBackward / 1e9, flops.attentionBackward / 1e9, flops.recompute / 1e9))
print(String(format: "peak RSS before training: %.0f MB", peakRSSMegabytes()))

let warmUp = try measure { try trainer.step(pairs) }
print(String(format: "warm-up step: %.2f s wall, %.2f CPU-s", warmUp.wall, warmUp.cpu))
var steps: [Timing] = []
var losses: [Double] = []
for _ in 0..<options.steps {
    var report: StepReport?
    steps.append(try measure { report = try trainer.step(pairs) })
    if let report {
        losses.append(Double(report.loss))
        print(String(format: "step %d: loss %.4f, gradient norm %.3f: %.2f s wall, %.2f CPU-s",
                     report.step, report.loss, report.gradientNorm, steps[steps.count - 1].wall, steps[steps.count - 1].cpu))
    }
}
let peak = peakRSSMegabytes()  // before the phase measurements below copy the optimizer's state
// Again after the steps, as other load on the machine may have held the first measurement down.
print("again after the steps:", terminator: " ")
let gemmAfter = sgemmCeiling()
let gemm = (wall: max(gemmBefore.wall, gemmAfter.wall), perCPUSecond: max(gemmBefore.perCPUSecond, gemmAfter.perCPUSecond))
print(String(format: "sgemm ceiling (best of all): %.1f GFLOPS, %.1f GFLOP per CPU-second", gemm.wall, gemm.perCPUSecond))
// Phases, from the public API: the forward pass alone (no dropout, no activations kept), loss + gradients
// (forward with activations, InfoNCE, backward), and clipping + AdamW on copies of the trainer's state.
let forwardOnly = try measure { _ = try trainer.embed(pairs.flatMap { [$0.text, $0.positive] }) }
var gradients: [Float] = []
let lossAndGradients = try measure { gradients = try trainer.lossAndGradients(pairs).gradients }
var optimizer = trainer.optimizer, parameters = trainer.adapter.parameters
let update = try measure {
    GradientClipping.clip(&gradients, maxNorm: configuration.maxGradientNorm)
    try optimizer.update(&parameters, gradients: gradients, learningRate: configuration.learningRate)
}
let wall = median(steps.map(\.wall)), cpu = median(steps.map(\.cpu))
print(String(format: "phases: forward only %.2f s wall / %.2f CPU-s; loss + gradients %.2f / %.2f; clip + AdamW %.2f / %.2f",
             forwardOnly.wall, forwardOnly.cpu, lossAndGradients.wall, lossAndGradients.cpu, update.wall, update.cpu))
print(String(format: "step: %.2f s wall (median of %d, best %.2f), %.2f CPU-s (%.2f CPU-s per core); %.0f tokens/s",
             wall, steps.count, steps.map(\.wall).min() ?? 0, cpu, cpu / Double(max(1, BLASRuntime.threads)), Double(tokens) / wall))
print(String(format: "achieved: %.1f GFLOPS = %.0f%% of the sgemm ceiling; %.1f GFLOP per CPU-second = %.0f%% of the CPU-time ceiling",
             flops.total / wall / 1e9, 100 * flops.total / wall / 1e9 / gemm.wall,
             flops.total / cpu / 1e9, 100 * flops.total / cpu / 1e9 / gemm.perCPUSecond))
print(String(format: "peak RSS: %.0f MB", peak))
// transformers + PEFT (fp32) on the same workload, measured once on this project's reference machine.
let reference = (seconds: 6.46, megabytes: 7.7 * 1024)
print(String(format: "vs transformers + PEFT (6.46 s, 7.7 GB per step): %.2fx the time (wall), %.2fx the memory",
             wall / reference.seconds, peak / reference.megabytes)
      + "; targets 3.0 s: \(wall <= 3 ? "met" : "missed"), 2 GB: \(peak <= 2048 ? "met" : "missed")")
// One machine-readable line for Benchmarks/compare/compare.py.
let result: [String: Any] = [
    "system": "condense", "pairs": pairs.count, "tokens": tokens, "lengths": lengths, "rank": options.rank,
    "step_seconds": steps.map(\.wall), "step_cpu_seconds": steps.map(\.cpu), "peak_rss_mb": peak,
    "losses": losses,
]
print("RESULT " + (String(data: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), encoding: .utf8) ?? "{}"))
