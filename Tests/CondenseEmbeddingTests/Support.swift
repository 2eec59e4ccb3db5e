import CondenseEmbedding
import Foundation

enum Python {
    static let hasNumPy: Bool = (try? run("import numpy")) != nil

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `python3 -c script arguments...`, returning stdout; throws on a non-zero exit.
    static func run(_ script: String, arguments: [String] = []) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "python3 failed: \(String(decoding: errors, as: UTF8.self))")
        }
        return String(decoding: output, as: UTF8.self)
    }
}

enum Fixtures {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let tinyLlama = packageRoot.appendingPathComponent("Tests/CondenseModelTests/Fixtures/tiny-llama").path

    /// The tiny random Llama of the model tests (vocabulary 300, hidden 32, 256 positions).
    static func tinyEmbedder(tokenBudget: Int = Embedder.defaultTokenBudget) throws -> Embedder {
        try Embedder.load(modelPath: tinyLlama, tokenBudget: tokenBudget)
    }

    /// The default model: $CONDENSE_TEST_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf; nil if absent.
    static let realModelPath: String? = {
        let path = ProcessInfo.processInfo.environment["CONDENSE_TEST_MODEL"]
            ?? packageRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()

    static let realEmbedder: Embedder? = realModelPath.flatMap { try? Embedder.load(modelPath: $0) }
}

func cosine(_ a: [Float], _ b: [Float]) -> Float {
    var dot: Float = 0, na: Float = 0, nb: Float = 0
    for (x, y) in zip(a, b) {
        dot += x * y
        na += x * x
        nb += y * y
    }
    return dot / (na.squareRoot() * nb.squareRoot())
}
