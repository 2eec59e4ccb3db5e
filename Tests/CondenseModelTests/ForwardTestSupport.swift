import CondenseModel
import CondenseTensor
import Foundation

/// Deterministic pseudo-random numbers (SplitMix64) for reproducible random models.
struct ForwardTestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Approximately normal (sum of uniforms), mean 0, standard deviation `deviation`.
    mutating func normal(_ count: Int, deviation: Float) -> [Float] {
        (0..<count).map { _ in
            var sum: Float = 0
            for _ in 0..<4 { sum += Float.random(in: -1...1, using: &self) }
            return sum * deviation * 0.866  // 4 uniforms on [-1, 1] have σ = 2/√3
        }
    }
}

/// Tiny random models of each supported architecture, with the weight statistics of trained ones
/// (linear weights σ = 1/√in, norm weights near 1), so activations keep realistic scales.
enum TinyModels {
    static func config(
        _ architecture: Architecture, headDim: Int = 16, ropeScaling: Llama3RopeScaling? = nil
    ) -> ModelConfig {
        ModelConfig(
            architecture: architecture, vocabSize: 61, hiddenSize: 64, intermediateSize: 96, layerCount: 2,
            headCount: 4, kvHeadCount: 2, headDim: headDim, rmsNormEps: 1e-5, ropeTheta: 10_000,
            ropeScaling: ropeScaling, maxPositionEmbeddings: 256, tieWordEmbeddings: true)
    }

    static func weights(_ config: ModelConfig, seed: UInt64) -> ModelWeights {
        var random = ForwardTestRandom(seed: seed)
        func linear(_ out: Int, _ inFeatures: Int) -> Matrix {
            Matrix(rows: out, cols: inFeatures, data: random.normal(out * inFeatures, deviation: 1 / Float(inFeatures).squareRoot()))
        }
        func norm(_ count: Int) -> [Float] { random.normal(count, deviation: 0.1).map { 1 + $0 } }
        let hidden = config.hiddenSize, q = config.headCount * config.headDim, kv = config.kvHeadCount * config.headDim
        let layers = (0..<config.layerCount).map { _ in
            LayerWeights(
                attentionNorm: norm(hidden), wq: linear(q, hidden), wk: linear(kv, hidden), wv: linear(kv, hidden),
                wo: linear(hidden, q),
                qBias: config.architecture == .qwen2 ? random.normal(q, deviation: 0.5) : nil,
                kBias: config.architecture == .qwen2 ? random.normal(kv, deviation: 0.5) : nil,
                vBias: config.architecture == .qwen2 ? random.normal(kv, deviation: 0.5) : nil,
                qNorm: config.architecture == .qwen3 ? norm(config.headDim) : nil,
                kNorm: config.architecture == .qwen3 ? norm(config.headDim) : nil,
                ffnNorm: norm(hidden), wGate: linear(config.intermediateSize, hidden),
                wUp: linear(config.intermediateSize, hidden), wDown: linear(hidden, config.intermediateSize))
        }
        return ModelWeights(
            config: config,
            tokenEmbedding: Matrix(rows: config.vocabSize, cols: hidden, data: random.normal(config.vocabSize * hidden, deviation: 1)),
            layers: layers, finalNorm: norm(hidden))
    }

    static func tokens(count: Int, vocabSize: Int, seed: UInt64) -> [Int32] {
        var random = ForwardTestRandom(seed: seed)
        return (0..<count).map { _ in Int32.random(in: 0..<Int32(vocabSize), using: &random) }
    }
}

/// Runs `scripts/reference/llama_reference.py` (float64 NumPy) on a model dumped to a temp directory.
enum ReferenceRunner {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let script = packageRoot.appendingPathComponent("scripts/reference/llama_reference.py")

    /// Whether `python3` with NumPy can run (the reference tests are skipped otherwise).
    static let available: Bool = (try? run(["-c", "import numpy"])) != nil

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "python3 \(arguments.joined(separator: " ")) failed: \(String(decoding: message, as: UTF8.self))")
        }
        return String(decoding: message, as: UTF8.self)
    }

    struct Output {
        var hidden: [Double]
        var attention: [Double]
    }

    /// Reference hidden states and last-layer attention for `weights` (dumped in HF layout).
    static func reference(_ weights: ModelWeights, sequences: [[Int32]]) throws -> Output {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("condense-forward-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try dump(weights, to: directory)
        return try reference(source: ["--weights", directory.path], sequences: sequences, workDirectory: directory)
    }

    /// Reference for a GGUF file read by gguf-py (adjacent-pair RoPE on the stored, permuted Q/K).
    static func reference(gguf path: String, sequences: [[Int32]]) throws -> Output {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("condense-forward-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try reference(source: ["--gguf", path], sequences: sequences, workDirectory: directory)
    }

    private static func reference(source: [String], sequences: [[Int32]], workDirectory: URL) throws -> Output {
        let tokens = workDirectory.appendingPathComponent("tokens.json")
        try JSONEncoder().encode(sequences).write(to: tokens)
        let hidden = workDirectory.appendingPathComponent("hidden.f64")
        let attention = workDirectory.appendingPathComponent("attention.f64")
        try run([script.path] + source + ["--tokens", tokens.path, "--out", hidden.path, "--attention-out", attention.path])
        return Output(hidden: try readDoubles(hidden), attention: try readDoubles(attention))
    }

    private static func readDoubles(_ url: URL) throws -> [Double] {
        let data = try Data(contentsOf: url)
        return data.withUnsafeBytes { raw in
            (0..<(data.count / 8)).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
        }
    }

    private struct TensorEntry: Encodable {
        var file: String
        var shape: [Int]
    }

    private struct RopeScalingJSON: Encodable {
        var rope_type = "llama3"
        var factor: Float
        var low_freq_factor: Float
        var high_freq_factor: Float
        var original_max_position_embeddings: Int
    }

    private struct ConfigJSON: Encodable {
        var architecture: String
        var vocab_size, hidden_size, intermediate_size, num_hidden_layers: Int
        var num_attention_heads, num_key_value_heads, head_dim: Int
        var rms_norm_eps, rope_theta: Float
        var rope_scaling: RopeScalingJSON?
    }

    /// HF names, raw little-endian float32 files, a manifest and config.json.
    static func dump(_ weights: ModelWeights, to directory: URL) throws {
        var manifest: [String: TensorEntry] = [:]
        func write(_ name: String, _ values: [Float], _ shape: [Int]) throws {
            let file = name + ".f32"
            let data = values.withUnsafeBufferPointer { Data(buffer: $0) }  // little-endian host
            try data.write(to: directory.appendingPathComponent(file))
            manifest[name] = TensorEntry(file: file, shape: shape)
        }
        func write(_ name: String, _ matrix: Matrix) throws { try write(name, matrix.data, [matrix.rows, matrix.cols]) }
        try write("model.embed_tokens.weight", weights.tokenEmbedding)
        try write("model.norm.weight", weights.finalNorm, [weights.finalNorm.count])
        for (i, layer) in weights.layers.enumerated() {
            let p = "model.layers.\(i)."
            try write(p + "input_layernorm.weight", layer.attentionNorm, [layer.attentionNorm.count])
            try write(p + "self_attn.q_proj.weight", layer.wq)
            try write(p + "self_attn.k_proj.weight", layer.wk)
            try write(p + "self_attn.v_proj.weight", layer.wv)
            try write(p + "self_attn.o_proj.weight", layer.wo)
            for (name, bias) in [("q", layer.qBias), ("k", layer.kBias), ("v", layer.vBias)] {
                if let bias { try write(p + "self_attn.\(name)_proj.bias", bias, [bias.count]) }
            }
            if let qNorm = layer.qNorm, let kNorm = layer.kNorm {
                try write(p + "self_attn.q_norm.weight", qNorm, [qNorm.count])
                try write(p + "self_attn.k_norm.weight", kNorm, [kNorm.count])
            }
            try write(p + "post_attention_layernorm.weight", layer.ffnNorm, [layer.ffnNorm.count])
            try write(p + "mlp.gate_proj.weight", layer.wGate)
            try write(p + "mlp.up_proj.weight", layer.wUp)
            try write(p + "mlp.down_proj.weight", layer.wDown)
        }
        let c = weights.config
        let config = ConfigJSON(
            architecture: c.architecture.rawValue, vocab_size: c.vocabSize, hidden_size: c.hiddenSize,
            intermediate_size: c.intermediateSize, num_hidden_layers: c.layerCount, num_attention_heads: c.headCount,
            num_key_value_heads: c.kvHeadCount, head_dim: c.headDim, rms_norm_eps: c.rmsNormEps, rope_theta: c.ropeTheta,
            rope_scaling: c.ropeScaling.map {
                RopeScalingJSON(factor: $0.factor, low_freq_factor: $0.lowFreqFactor, high_freq_factor: $0.highFreqFactor,
                                original_max_position_embeddings: $0.originalMaxPositionEmbeddings)
            })
        try JSONEncoder().encode(config).write(to: directory.appendingPathComponent("config.json"))
        try JSONEncoder().encode(manifest).write(to: directory.appendingPathComponent("tensors.json"))
    }
}

/// Agreement between Condense's float32 states and the float64 reference.
struct Agreement: CustomStringConvertible {
    /// Cosine similarity of the mean-pooled vectors, worst sequence.
    var minPooledCosine: Double
    /// max |condense − reference| over all elements, divided by the reference's RMS (activation scale).
    var maxRelativeError: Double

    init(_ output: ForwardOutput, reference: [Double]) {
        let hidden = output.hidden.cols
        let scale = (reference.reduce(0) { $0 + $1 * $1 } / Double(max(1, reference.count))).squareRoot()
        maxRelativeError = zip(output.hidden.data, reference).map { abs(Double($0) - $1) }.max().map { $0 / scale } ?? 0
        minPooledCosine = 1
        for sequence in 0..<output.sequenceCount where output.length(of: sequence) > 0 {
            var ours = [Double](repeating: 0, count: hidden), theirs = ours
            for row in output.offsets[sequence]..<output.offsets[sequence + 1] {
                for c in 0..<hidden {
                    ours[c] += Double(output.hidden.data[row * hidden + c])
                    theirs[c] += reference[row * hidden + c]
                }
            }
            let dot = zip(ours, theirs).reduce(0) { $0 + $1.0 * $1.1 }
            let norms = (ours.reduce(0) { $0 + $1 * $1 } * theirs.reduce(0) { $0 + $1 * $1 }).squareRoot()
            minPooledCosine = min(minPooledCosine, dot / norms)
        }
    }

    var description: String { "pooled cosine ≥ \(minPooledCosine), max error \(maxRelativeError) × activation RMS" }
}
