import Foundation

/// A labelled clustering set: JSON lines `{"text": "...", "label": "..."}` (label a string or an integer).
public struct ClusteringDataset: Sendable, Equatable {
    /// The file name without directory and extension, e.g. `banking77`.
    public var name: String
    public var texts: [String]
    /// Gold labels as written in the file (integers in their decimal form).
    public var labels: [String]

    public init(name: String, texts: [String], labels: [String]) {
        self.name = name
        self.texts = texts
        self.labels = labels
    }

    public var denseLabels: DenseLabels { DenseLabels(labels) }

    public static func read(path: String) throws(EvaluationError) -> ClusteringDataset {
        let content = try DatasetFile.text(path: path)
        var texts: [String] = []
        var labels: [String] = []
        for (offset, line) in content.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !trimmed.isEmpty else { continue }
            let record: ClusteringRecord
            do {
                record = try JSONDecoder().decode(ClusteringRecord.self, from: Data(trimmed.utf8))
            } catch {
                throw .malformedLine(path: path, line: offset + 1, reason: "expected {\"text\": string, \"label\": string or integer}")
            }
            texts.append(record.text)
            labels.append(record.label)
        }
        guard !texts.isEmpty else { throw .emptyDataset(path: path) }
        return ClusteringDataset(name: DatasetFile.stem(of: path), texts: texts, labels: labels)
    }
}

private struct ClusteringRecord: Decodable {
    var text: String
    var label: String

    private enum CodingKeys: String, CodingKey { case text, label }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        text = try container.decode(String.self, forKey: .text)
        if let integer = try? container.decode(Int.self, forKey: .label) {
            label = String(integer)
        } else {
            label = try container.decode(String.self, forKey: .label)
        }
    }
}

/// One graded sentence pair of an STS-Benchmark-style file.
public struct STSPair: Sendable, Equatable {
    public var score: Double
    public var sentence1: String
    public var sentence2: String

    public init(score: Double, sentence1: String, sentence2: String) {
        self.score = score
        self.sentence1 = sentence1
        self.sentence2 = sentence2
    }
}

public enum STSDataset {
    /// The columns the header must start with; further columns (genre, source, year) are ignored.
    public static let requiredColumns = ["score", "sentence1", "sentence2"]

    /// Reads a TSV with header `score<TAB>sentence1<TAB>sentence2[<TAB>...]`.
    public static func read(path: String) throws(EvaluationError) -> [STSPair] {
        let content = try DatasetFile.text(path: path)
        // `\r\n` is one Character, so splitting on newline Characters handles both line endings.
        var lines = content.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        guard let header = lines.first else { throw .emptyDataset(path: path) }
        let headerColumns = header.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        guard Array(headerColumns.prefix(requiredColumns.count)) == requiredColumns else {
            throw .malformedLine(
                path: path, line: 1,
                reason: "header must start with \(requiredColumns.joined(separator: "<TAB>")), found \(header.prefix(80))")
        }
        var pairs: [STSPair] = []
        for (offset, line) in lines.enumerated().dropFirst() {
            let columns = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard columns.count >= requiredColumns.count else {
                throw .malformedLine(
                    path: path, line: offset + 1, reason: "expected at least 3 tab-separated columns, found \(columns.count)")
            }
            guard let score = Double(columns[0].trimmingCharacters(in: .whitespaces)), score.isFinite else {
                throw .malformedLine(path: path, line: offset + 1, reason: "score \"\(columns[0])\" is not a number")
            }
            pairs.append(STSPair(score: score, sentence1: String(columns[1]), sentence2: String(columns[2])))
        }
        guard !pairs.isEmpty else { throw .emptyDataset(path: path) }
        return pairs
    }
}

enum DatasetFile {
    static func text(path: String) throws(EvaluationError) -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadableFile(path: path, reason: error.localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .unreadableFile(path: path, reason: "not valid UTF-8")
        }
        return text
    }

    static func stem(of path: String) -> String {
        URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
    }
}
