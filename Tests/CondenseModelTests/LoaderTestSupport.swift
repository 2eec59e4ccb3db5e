import CondenseModel
import CondenseTensor
import Foundation
import Testing

/// Paths and helpers shared by the loader tests.
enum LoaderFixtures {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path(name)))) }

    /// The default model: `$CONDENSE_TEST_MODEL`, else models/SmolLM2-135M-Instruct.Q4_1.gguf in the package.
    static var defaultModelPath: String {
        if let path = ProcessInfo.processInfo.environment["CONDENSE_TEST_MODEL"], !path.isEmpty { return path }
        return packageRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    }

    static var defaultModelPresent: Bool { FileManager.default.fileExists(atPath: defaultModelPath) }
}

/// A scratch directory removed when the value is released.
final class LoaderScratchDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("condense-load-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func write(_ bytes: [UInt8], to name: String) throws -> String {
        let file = url.appendingPathComponent(name)
        try Data(bytes).write(to: file)
        return file.path
    }

    /// Copies a fixture (file or directory) into the scratch directory.
    func copyFixture(_ name: String) throws -> String {
        let destination = url.appendingPathComponent(name)
        try FileManager.default.copyItem(at: LoaderFixtures.directory.appendingPathComponent(name), to: destination)
        return destination.path
    }
}

/// Runs `body` and returns the `ModelLoadError` it throws (failing the test if it throws none).
func loadError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) -> ModelLoadError? {
    do {
        _ = try body()
        Issue.record("expected a ModelLoadError, got success", sourceLocation: sourceLocation)
        return nil
    } catch let error as ModelLoadError {
        return error
    } catch {
        Issue.record("expected a ModelLoadError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Exact equality of two weight sets, naming the first field that differs.
func expectIdentical(_ lhs: ModelWeights, _ rhs: ModelWeights, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(lhs.config == rhs.config, sourceLocation: sourceLocation)
    #expect(lhs.tokenEmbedding == rhs.tokenEmbedding, "tokenEmbedding", sourceLocation: sourceLocation)
    #expect(lhs.finalNorm == rhs.finalNorm, "finalNorm", sourceLocation: sourceLocation)
    #expect(lhs.outputProjection == rhs.outputProjection, "outputProjection", sourceLocation: sourceLocation)
    #expect(lhs.layers.count == rhs.layers.count, sourceLocation: sourceLocation)
    for (index, (a, b)) in zip(lhs.layers, rhs.layers).enumerated() {
        let matrices: [(String, Matrix, Matrix)] = [
            ("wq", a.wq, b.wq), ("wk", a.wk, b.wk), ("wv", a.wv, b.wv), ("wo", a.wo, b.wo),
            ("wGate", a.wGate, b.wGate), ("wUp", a.wUp, b.wUp), ("wDown", a.wDown, b.wDown),
        ]
        for (name, x, y) in matrices {
            #expect(x == y, "layer \(index) \(name)", sourceLocation: sourceLocation)
        }
        let vectors: [(String, [Float]?, [Float]?)] = [
            ("attentionNorm", a.attentionNorm, b.attentionNorm), ("ffnNorm", a.ffnNorm, b.ffnNorm),
            ("qBias", a.qBias, b.qBias), ("kBias", a.kBias, b.kBias), ("vBias", a.vBias, b.vBias),
            ("qNorm", a.qNorm, b.qNorm), ("kNorm", a.kNorm, b.kNorm),
        ]
        for (name, x, y) in vectors {
            #expect(x == y, "layer \(index) \(name)", sourceLocation: sourceLocation)
        }
    }
}
