import Foundation
import Testing

@testable import CondenseEvaluation

@Suite struct DatasetTests {
    @Test func readsClusteringJSONLines() throws {
        let path = try temporaryFile(
            named: "tiny-set.jsonl",
            content: "{\"text\": \"open an account\", \"label\": \"banking\"}\r\n\n{\"label\": 7, \"text\": \"caf\\u00e9 \\\"quoted\\\"\"}\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let dataset = try ClusteringDataset.read(path: path)
        #expect(dataset.name == "tiny-set")
        #expect(dataset.texts == ["open an account", "café \"quoted\""])
        #expect(dataset.labels == ["banking", "7"])
        #expect(dataset.denseLabels.count == 2)
    }

    @Test func reportsTheMalformedClusteringLine() throws {
        let path = try temporaryFile(named: "bad.jsonl", content: "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\"}\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: EvaluationError.malformedLine(
            path: path, line: 2, reason: "expected {\"text\": string, \"label\": string or integer}")) {
            try ClusteringDataset.read(path: path)
        }
    }

    @Test func emptyAndMissingFilesAreErrors() throws {
        let path = try temporaryFile(named: "empty.jsonl", content: "\n\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: EvaluationError.emptyDataset(path: path)) { try ClusteringDataset.read(path: path) }
        #expect(throws: EvaluationError.self) { try ClusteringDataset.read(path: "/nonexistent/condense/set.jsonl") }
        #expect(throws: EvaluationError.self) { try STSDataset.read(path: "/nonexistent/condense/sts.tsv") }
    }

    @Test func readsSTSBenchmarkTSV() throws {
        let path = try temporaryFile(
            named: "sts.tsv",
            content: "score\tsentence1\tsentence2\tgenre\tsource\tyear\n"
                + "5.000\tA man is \"dancing\".\tA man dances.\tmain-captions\tMSRvid\t2012test\n"
                + "0.250\tOne.\tTwo.\tmain-news\theadlines\t2015\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let pairs = try STSDataset.read(path: path)
        #expect(pairs == [
            STSPair(score: 5, sentence1: "A man is \"dancing\".", sentence2: "A man dances."),
            STSPair(score: 0.25, sentence1: "One.", sentence2: "Two."),
        ])
    }

    @Test func rejectsBadSTSHeaderAndRows() throws {
        let badHeader = try temporaryFile(named: "h.tsv", content: "sentence1\tsentence2\tscore\na\tb\t1\n")
        let badScore = try temporaryFile(named: "s.tsv", content: "score\tsentence1\tsentence2\n1.0\ta\tb\nhigh\tc\td\n")
        let shortRow = try temporaryFile(named: "r.tsv", content: "score\tsentence1\tsentence2\n1.0\ta\n")
        defer {
            for path in [badHeader, badScore, shortRow] { try? FileManager.default.removeItem(atPath: path) }
        }
        #expect(throws: EvaluationError.self) { try STSDataset.read(path: badHeader) }
        #expect(throws: EvaluationError.malformedLine(path: badScore, line: 3, reason: "score \"high\" is not a number")) {
            try STSDataset.read(path: badScore)
        }
        #expect(throws: EvaluationError.malformedLine(
            path: shortRow, line: 2, reason: "expected at least 3 tab-separated columns, found 2")) {
            try STSDataset.read(path: shortRow)
        }
    }
}
