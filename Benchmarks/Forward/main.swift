// Forward-pass benchmark: raw sgemm GFLOPS, the resulting ceiling for the model, the engine's packed-weight
// linear kernels against sgemm on the model's product shapes (same process, alternating), achieved tokens/s on
// the embedding workload, and single-text latency.
//
//   swift build -c release --product condense-bench-forward
//   .build/release/condense-bench-forward [--model FILE] [--sentences FILE] [--batch-tokens N,N,...] [--passes N]
//
// Without a model file (or with --random) it uses random F32 weights of SmolLM2-135M's shape: the same
// FLOPs and the same speed as the dequantised real model. Texts are tokenized with the model's own
// tokenizer; with random weights, synthetic token ids with the real workload's lengths stand in.
import BenchmarkSupport
import CondenseModel
import CondenseTensor
import CondenseTokenizer
import Foundation

struct Options {
    var model: String? = ProcessInfo.processInfo.environment["CONDENSE_TEST_MODEL"] ?? "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    var sentences = "/work/shared/bench/sentences.txt"
    var batchTokens = [512, 1024, 2048, 4096]
    var passes = 2
    var random = false

    init(arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--model": model = iterator.next()
            case "--random": random = true
            case "--sentences": sentences = iterator.next() ?? sentences
            case "--batch-tokens":
                batchTokens = (iterator.next() ?? "").split(separator: ",").compactMap { Int($0) }
            case "--passes": passes = max(1, Int(iterator.next() ?? "") ?? passes)
            default:
                print("unknown argument \(argument)")
                exit(2)
            }
        }
    }
}

/// SmolLM2-135M's shape with random weights (σ = 1/√in), for runs without the model file.
func randomDefaultModel() -> ModelWeights {
    let config = ModelConfig(
        architecture: .llama, vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, layerCount: 30,
        headCount: 9, kvHeadCount: 3, headDim: 64, rmsNormEps: 1e-5, ropeTheta: 100_000, ropeScaling: nil,
        maxPositionEmbeddings: 8192, tieWordEmbeddings: true)
    var generator = SystemRandomNumberGenerator()
    func matrix(_ rows: Int, _ cols: Int) -> Matrix {
        let bound = (3 / Float(cols)).squareRoot()
        return Matrix(rows: rows, cols: cols, data: (0..<(rows * cols)).map { _ in Float.random(in: -bound...bound, using: &generator) })
    }
    let ones = [Float](repeating: 1, count: 576)
    let layers = (0..<30).map { _ in
        LayerWeights(attentionNorm: ones, wq: matrix(576, 576), wk: matrix(192, 576), wv: matrix(192, 576),
                     wo: matrix(576, 576), ffnNorm: ones, wGate: matrix(1536, 576), wUp: matrix(1536, 576),
                     wDown: matrix(576, 1536))
    }
    return ModelWeights(config: config, tokenEmbedding: matrix(49152, 576), layers: layers, finalNorm: ones)
}

/// FLOPs per token of the forward pass without LM head: linear layers plus causal attention
/// (QKᵀ and PV over the visible prefix) averaged over the workload's positions.
func flopsPerToken(_ config: ModelConfig, lengths: [Int]) -> (total: Double, linear: Double) {
    let q = config.headCount * config.headDim, kv = config.kvHeadCount * config.headDim
    let perLayer = config.hiddenSize * (q + 2 * kv) + q * config.hiddenSize + 3 * config.hiddenSize * config.intermediateSize
    let linear = 2 * Double(perLayer * config.layerCount)
    let tokens = lengths.reduce(0, +)
    let visible = lengths.reduce(0.0) { $0 + Double($1) * Double($1 + 1) / 2 }  // Σ (position + 1)
    let attention = 4 * Double(q) * visible / Double(max(1, tokens)) * Double(config.layerCount)
    return (linear + attention, linear)
}

/// Consecutive sequences grouped into batches of about `tokens` tokens.
func batches(_ sequences: [[Int32]], tokens: Int) -> [[[Int32]]] {
    var result: [[[Int32]]] = [], current: [[Int32]] = [], count = 0
    for sequence in sequences {
        if count + sequence.count > tokens, !current.isEmpty {
            result.append(current)
            current = []
            count = 0
        }
        current.append(sequence)
        count += sequence.count
    }
    if !current.isEmpty { result.append(current) }
    return result
}

/// GFLOPS of OpenBLAS's sgemm (`GEMM.linear`, weights as stored) and of the engine's packed-weight kernels
/// (`PackedWeight.apply`) on one product shape, alternating the two, best of `trials`; each call uses fresh
/// weights from a 128 MB pool so neither runs from cache as the model's 425 MB cannot.
func linearGFLOPS(rows: Int, outFeatures n: Int, inFeatures k: Int, trials: Int = 5) -> (sgemm: Double, packed: Double) {
    let copies = max(1, 32_000_000 / (n * k))
    let weights = (0..<copies).map { copy in (0..<(n * k)).map { Float(($0 + copy) % 89) * 1e-3 - 0.04 } }
    let packed = weights.map { PackedWeight(Matrix(rows: n, cols: k, data: $0)) }
    let input = (0..<(rows * k)).map { Float($0 % 97) * 1e-3 }
    var output = [Float](repeating: 0, count: rows * n)
    let repeats = max(copies, Int(4e9 / Double(2 * rows * n * k)))
    var best = (sgemm: 0.0, packed: 0.0)
    input.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
            guard let x = x.baseAddress, let y = y.baseAddress else { return }
            for _ in 0..<trials {
                let sgemm = measure {
                    for call in 0..<repeats {
                        weights[call % copies].withUnsafeBufferPointer { w in
                            GEMM.linear(x, rows: rows, weight: w.baseAddress!, outFeatures: n, inFeatures: k, into: y)
                        }
                    }
                }
                let ours = measure {
                    for call in 0..<repeats { packed[call % copies].apply(x, rows: rows, into: y) }
                }
                let flops = 2 * Double(rows * n * k * repeats) / 1e9
                best = (max(best.sgemm, flops / sgemm.wall), max(best.packed, flops / ours.wall))
            }
        }
    }
    return best
}

let options = Options(arguments: CommandLine.arguments)
print("BLAS: \(BLASRuntime.summary)")
print("linear layers: \(PackedWeight.summary)")
print("CPU: \(ProcessInfo.processInfo.activeProcessorCount) cores")
let gemm = sgemmGFLOPS(sideBySide: false)
print(String(format: "sgemm M=1024 N=1536 K=576: %.1f GFLOPS (best of 5 x 20 calls); %.1f GFLOP per CPU-second", gemm.wall, gemm.perCPUSecond))
// The model's products (q|k|v, attention output, gate|up, down) for one short text and for a large batch.
for rows in [17, 1024] {
    for (n, k) in [(960, 576), (576, 576), (3072, 576), (576, 1536)] {
        let rate = linearGFLOPS(rows: rows, outFeatures: n, inFeatures: k)
        print(String(format: "linear M=%d N=%d K=%d: packed kernels %.1f GFLOPS, OpenBLAS sgemm %.1f GFLOPS, ratio %.2fx",
                     rows, n, k, rate.packed, rate.sgemm, rate.packed / rate.sgemm))
    }
}

/// The model, its tokenizer when the model file provides one, and a description of the source.
func loadModel(_ options: Options) throws -> (LlamaModel, Tokenizer?, String) {
    if !options.random, let path = options.model, FileManager.default.fileExists(atPath: path) {
        let loaded = try ModelLoader.load(path: path)
        return (try LlamaModel(weights: loaded.weights), try? Tokenizer(spec: loaded.tokenizer), "\(path) (dequantised to F32)")
    }
    return (try LlamaModel(weights: randomDefaultModel()), nil, "random F32 weights of SmolLM2-135M's shape")
}

let (model, tokenizer, source) = try loadModel(options)
print("model: \(source)")

let texts = try String(contentsOfFile: options.sentences, encoding: .utf8).split(separator: "\n").map(String.init)
let prompts = texts.map { "This sentence: \"\($0)\" belongs to the following cluster:" }
let sequences: [[Int32]]
if let tokenizer {
    sequences = prompts.map { tokenizer.encode($0) }
    print("workload: \(prompts.count) texts, \(sequences.reduce(0) { $0 + $1.count }) tokens (model tokenizer)")
} else {
    // Synthetic ids; lengths ≈ the real prompts' (about 4 characters per token).
    sequences = prompts.enumerated().map { index, prompt in
        (0..<max(1, prompt.utf8.count / 4)).map { Int32(($0 * 7919 + index * 104_729) % model.config.vocabSize) }
    }
    print("workload: \(prompts.count) texts, \(sequences.reduce(0) { $0 + $1.count }) tokens (synthetic ids, estimated lengths)")
}
let totalTokens = sequences.reduce(0) { $0 + $1.count }
let flops = flopsPerToken(model.config, lengths: sequences.map(\.count))
let ceiling = gemm.wall * 1e9 / flops.total
let cpuCeiling = gemm.perCPUSecond * 1e9 / flops.total
print(String(format: "forward FLOPs per token: %.1f MFLOP (%.1f in linear layers); ceiling %.0f tokens/s (%.0f tokens per CPU-second)",
             flops.total / 1e6, flops.linear / 1e6, ceiling, cpuCeiling))

_ = try model.forward(Array(sequences.prefix(8)))  // warm-up
for batchTokens in options.batchTokens {
    let groups = batches(sequences, tokens: batchTokens)
    var timings: [Timing] = []
    for _ in 0..<options.passes {
        timings.append(try measure { for group in groups { _ = try model.forward(group) } })
    }
    let best = timings.map(\.wall).min() ?? 1, bestCPU = timings.map(\.cpu).min() ?? 1
    let rate = Double(totalTokens) / best, cpuRate = Double(totalTokens) / bestCPU
    print(String(format: "forward, batches of ~%d tokens (%d batches): %.0f tokens/s best, %.0f median of %d passes; %.1f texts/s; %.0f%% of ceiling; %.0f tokens per CPU-second = %.0f%% of the CPU-time ceiling",
                 batchTokens, groups.count, rate, Double(totalTokens) / median(timings.map(\.wall)), options.passes,
                 Double(sequences.count) / best, 100 * rate / ceiling, cpuRate, 100 * cpuRate / cpuCeiling))
}

let shortText = "This sentence: \"The cat sat on the mat.\" belongs to the following cluster:"
let shortTokens = tokenizer?.encode(shortText) ?? Array(sequences[0].prefix(20))
var latencies: [Timing] = []
for _ in 0..<30 {
    latencies.append(try measure {
        let tokens = tokenizer?.encode(shortText) ?? shortTokens
        _ = try model.forward([tokens])
    })
}
print(String(format: "single short text (%d tokens, tokenize + forward): %.1f ms median, %.1f ms best of 30; %.1f CPU-ms median",
             shortTokens.count, median(latencies.map(\.wall)) * 1e3, (latencies.map(\.wall).min() ?? 0) * 1e3,
             median(latencies.map(\.cpu)) * 1e3))
