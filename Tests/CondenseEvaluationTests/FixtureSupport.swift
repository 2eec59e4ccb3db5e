import Foundation

/// Reference fixtures written by `scripts/gen-eval-fixtures.py` (scikit-learn / scipy outputs).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func load<Case: Decodable>(_ file: String, as type: Case.Type) throws -> [Case] {
        let data = try Data(contentsOf: directory.appendingPathComponent(file))
        return try JSONDecoder().decode(FixtureFile<Case>.self, from: data).cases
    }
}

struct FixtureFile<Case: Decodable>: Decodable {
    var cases: [Case]
}

struct VMeasureCase: Decodable {
    var name: String
    var labels_true: [Int]
    var labels_pred: [Int]
    var homogeneity: Double
    var completeness: Double
    var v_measure: Double
}

struct KMeansCase: Decodable {
    var name: String
    var clusters: Int
    var features: Int
    var labels: [Int]
    var points: [Float]
    var sklearn_inertia: [Double]
    var sklearn_mean_inertia: Double
}

struct SpearmanCase: Decodable {
    var name: String
    var x: [Double]
    var y: [Double]
    var rho: Double
}

/// A fresh temporary file holding `content`; the caller removes it.
func temporaryFile(named name: String, content: String) throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("condense-eval-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let url = directory.appendingPathComponent(name)
    try Data(content.utf8).write(to: url)
    return url.path
}

/// The tiny random Llama of the model tests (a Hugging Face directory), used read-only.
enum TinyModel {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let path = packageRoot.appendingPathComponent("Tests/CondenseModelTests/Fixtures/tiny-llama").path
    static var present: Bool { FileManager.default.fileExists(atPath: path) }
}
