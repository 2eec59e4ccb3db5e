// Embedding benchmark through the product path (`Embedder.embed`: prompt, tokenizer, batch planner,
// forward pass, pooling), for the side-by-side comparison in Benchmarks/compare/: texts/s and tokens/s on
// the workload, single-text latency, load time and peak RSS, and the vectors for the agreement check.
//
//   swift build -c release --product condense-bench-embed
//   .build/release/condense-bench-embed [--model FILE] [--sentences FILE] [--pooling mean|last|eos|weighted_mean]
//       [--passes N] [--latency-runs N] [--vectors OUT.npy]
//
// The last line is one JSON object (`RESULT {...}`) that Benchmarks/compare/compare.py reads.
import BenchmarkSupport
import CondenseEmbedding
import CondenseTensor
import Foundation

struct Options {
    var model = ProcessInfo.processInfo.environment["CONDENSE_MODEL"] ?? "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    var sentences = "/work/shared/bench/sentences.txt"
    var pooling = Pooling.mean
    var passes = 3
    var latencyRuns = 30
    var vectors: String?

    init(arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        func fail(_ message: String) -> Never {
            FileHandle.standardError.write(Data((message + "\n").utf8))
            exit(2)
        }
        while let argument = iterator.next() {
            switch argument {
            case "--model": model = iterator.next() ?? model
            case "--sentences": sentences = iterator.next() ?? sentences
            case "--pooling":
                guard let value = iterator.next().flatMap(Pooling.init(rawValue:)) else { fail("--pooling: mean, last, eos or weighted_mean") }
                pooling = value
            case "--passes": passes = max(1, Int(iterator.next() ?? "") ?? passes)
            case "--latency-runs": latencyRuns = max(0, Int(iterator.next() ?? "") ?? latencyRuns)
            case "--vectors": vectors = iterator.next()
            default: fail("unknown argument \(argument)")
            }
        }
    }
}

let options = Options(arguments: CommandLine.arguments)
let texts = try String(contentsOfFile: options.sentences, encoding: .utf8).split(separator: "\n").map(String.init)
let embeddingOptions = EmbeddingOptions(prompt: try PromptTemplate(nameOrTemplate: "cluster1"), pooling: options.pooling)

var embedder: Embedder?
let load = try measure { embedder = try Embedder.load(modelPath: options.model) }
guard let embedder else { exit(1) }
let tokens = try texts.reduce(0) { $0 + (try embedder.prepare($1, options: embeddingOptions).tokens.count) }
print("BLAS: \(BLASRuntime.summary)")
print("linear layers: \(PackedWeight.summary)")
print("model: \(options.model), loaded in \(String(format: "%.2f", load.wall)) s; workload: \(texts.count) texts, \(tokens) tokens, pooling \(options.pooling.rawValue)")

func vectors(_ results: [Result<[Float], EmbeddingError>]) throws -> [Float] {
    try results.flatMap { try $0.get() }
}
_ = try embedder.embed(Array(texts.prefix(16)), options: embeddingOptions)  // warm-up
var passes: [Timing] = []
var output: [Float] = []
for _ in 0..<options.passes {
    passes.append(try measure { output = try vectors(embedder.embed(texts, options: embeddingOptions)) })
}
let walls = passes.map(\.wall)
print(String(format: "embed %d texts: %.2f s median (%.2f-%.2f) = %.0f tokens/s, %.1f texts/s; %.2f CPU-s",
             texts.count, median(walls), walls.min() ?? 0, walls.max() ?? 0, Double(tokens) / median(walls),
             Double(texts.count) / median(walls), median(passes.map(\.cpu))))

let shortText = "The cat sat on the mat."
var latencies: [Double] = []
for _ in 0..<options.latencyRuns {
    latencies.append(try measure { _ = try vectors(embedder.embed([shortText], options: embeddingOptions)) }.wall)
}
if !latencies.isEmpty {
    print(String(format: "single short text: %.1f ms median (%.1f-%.1f) of %d", median(latencies) * 1e3,
                 (latencies.min() ?? 0) * 1e3, (latencies.max() ?? 0) * 1e3, latencies.count))
}
if let path = options.vectors {
    let bytes = NPYFormat.float32Matrix(rows: texts.count, columns: embedder.dimensions, values: output)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

let result: [String: Any] = [
    "system": "condense", "pooling": options.pooling.rawValue, "texts": texts.count, "tokens": tokens,
    "pass_seconds": walls, "latency_seconds": latencies, "load_seconds": load.wall, "peak_rss_mb": peakRSSMegabytes(),
    "blas": BLASRuntime.summary, "linear_kernels": PackedWeight.summary,
]
let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
print("RESULT " + (String(data: json, encoding: .utf8) ?? "{}"))
