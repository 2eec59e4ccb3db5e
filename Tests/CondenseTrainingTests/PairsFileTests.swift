import Foundation
import Testing
@testable import CondenseTraining

struct PairsFileTests {
    private func csv(_ content: String) throws -> PairsFile { try PairsFile.parseCSV(content, path: "p.csv") }
    private func jsonl(_ content: String) throws -> PairsFile { try PairsFile.parseJSONLines(content, path: "p.jsonl") }

    private func malformedLine(_ body: () throws -> PairsFile) -> Int? {
        do {
            _ = try body()
            return nil
        } catch let error as PairsFileError {
            if case let .malformed(_, line, _) = error { return line }
            return nil
        } catch { return nil }
    }

    @Test func csvQuotingFollowsRFC4180() throws {
        let file = try csv("text,text_aug\r\n\"a, b\",\"say \"\"hi\"\"\"\r\n\"two\nlines\",plain\nlast,\"\"\"quoted\"\"\"")
        #expect(file.pairs == [
            TextPair(text: "a, b", positive: "say \"hi\""),
            TextPair(text: "two\nlines", positive: "plain"),
            TextPair(text: "last", positive: "\"quoted\""),
        ])
        #expect(file.skippedEmptyRows == 0)
    }

    @Test func headerIsDetectedByItsColumnNames() throws {
        #expect(try csv("a,b\nc,d\n").pairs == [TextPair(text: "a", positive: "b"), TextPair(text: "c", positive: "d")])
        #expect(try csv("text,text_aug\nc,d\n").pairs == [TextPair(text: "c", positive: "d")])
        #expect(try csv("Text_Aug,TEXT\nc,d\n").pairs == [TextPair(text: "d", positive: "c")])
        #expect(try csv("id,positive,text\n1,p,t\n").pairs == [TextPair(text: "t", positive: "p")])
        // A data row that merely contains the word "text" is data.
        #expect(try csv("text,other\n").pairs == [TextPair(text: "text", positive: "other")])
    }

    @Test func emptySidesAreSkippedAndCountedBlankLinesIgnored() throws {
        let file = try csv("text,text_aug\na,b\n\n , c\nd,\"\"\ne,f\n\n")
        #expect(file.pairs == [TextPair(text: "a", positive: "b"), TextPair(text: "e", positive: "f")])
        #expect(file.skippedEmptyRows == 2)
        let lines = try jsonl("{\"text\": \"a\", \"text_aug\": \"b\"}\n\n{\"text\": \"\\t\", \"text_aug\": \"b\"}\n")
        #expect(lines.pairs == [TextPair(text: "a", positive: "b")])
        #expect(lines.skippedEmptyRows == 1)
    }

    @Test func malformedCSVNamesTheLine() {
        #expect(malformedLine { try csv("text,text_aug\na,b\n\"open,b\nmore\n") } == 3)      // unterminated quote
        #expect(malformedLine { try csv("text,text_aug\na,b\na,b,c\n") } == 3)               // wrong field count
        #expect(malformedLine { try csv("a,b\n\"x\ny\",z\nonly\n") } == 4)                   // after a quoted newline
        #expect(malformedLine { try csv("a,b\nc\"d,e\n") } == 2)                             // quote in an unquoted field
        #expect(malformedLine { try csv("a,b\n\"c\"d,e\n") } == 2)                           // text after the closing quote
    }

    @Test func jsonLinesAcceptTextAugOrPositive() throws {
        let file = try jsonl("{\"text\": \"a\", \"text_aug\": \"b\"}\r\n{\"text\": \"c\\nd\", \"positive\": \"e\"}\n")
        #expect(file.pairs == [TextPair(text: "a", positive: "b"), TextPair(text: "c\nd", positive: "e")])
    }

    @Test func malformedJSONLinesNameTheLine() {
        #expect(malformedLine { try jsonl("{\"text\": \"a\", \"text_aug\": \"b\"}\n{\"text\": \"a\",\n") } == 2)  // bad JSON
        #expect(malformedLine { try jsonl("\n{\"text\": \"a\"}\n") } == 2)                                      // missing key
        #expect(malformedLine { try jsonl("{\"text\": 3, \"text_aug\": \"b\"}\n") } == 1)                       // not a string
        #expect(malformedLine { try jsonl("[1, 2]\n") } == 1)                                                   // not an object
    }

    @Test func filesAreReadByExtension() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pairs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let csvPath = directory.appendingPathComponent("p.csv").path
        try Data("\u{FEFF}text,text_aug\na,b\n".utf8).write(to: URL(fileURLWithPath: csvPath))
        #expect(try PairsFile.read(path: csvPath).pairs == [TextPair(text: "a", positive: "b")])

        #expect(throws: PairsFileError.self) { try PairsFile.read(path: directory.appendingPathComponent("missing.csv").path) }
        let txt = directory.appendingPathComponent("p.txt").path
        try Data("a,b\n".utf8).write(to: URL(fileURLWithPath: txt))
        #expect(throws: PairsFileError.unsupportedExtension(path: txt)) { try PairsFile.read(path: txt) }
    }
}
