import CondenseModel
import Foundation
import Testing

@Suite struct PairsOutputTests {
    static let settings = ParaphraseSettings(seed: 9).recorded

    @Test func csvQuotingRoundTrips() {
        let fields = [
            "plain", "a, comma", "say \"hi\"", "line\nbreak", "carriage\rreturn", "crlf\r\nend", "", " spaced ", "naïve – ünïcode",
        ]
        #expect(PairsCSV.row(["plain", "a, comma"]) == "plain,\"a, comma\"\n")
        #expect(PairsCSV.row(["say \"hi\"", ""]) == "\"say \"\"hi\"\"\",\n")
        let pairs: [[String]] = zip(fields, fields.dropFirst()).map { [$0, $1] }
        let text = PairsCSV.row(PairsCSV.header) + pairs.map(PairsCSV.row).joined()
        let bytes = Array(text.utf8)
        let (records, length) = PairsCSV.completeRecords(bytes)
        #expect(length == bytes.count)
        #expect(records.first == PairsCSV.header)
        #expect(Array(records.dropFirst()) == pairs)
    }

    @Test func unfinishedRecordsAreNotComplete() {
        let complete = "text,text_aug\na,b\n\"multi\nline\",c\n"
        for partial in ["x", "\"open, quote\nstill open", "d,\"e"] {
            let (records, length) = PairsCSV.completeRecords(Array((complete + partial).utf8))
            #expect(records == [["text", "text_aug"], ["a", "b"], ["multi\nline", "c"]])
            #expect(length == complete.utf8.count)
        }
    }

    /// An output with k rows, a lost progress update, and a half-written last line: reopening cuts the
    /// partial line and continues after the rows already there.
    @Test func resumeContinuesAfterCompleteRows() throws {
        let scratch = try LoaderScratchDirectory()
        let path = scratch.url.appendingPathComponent("pairs.csv").path
        do {
            let output = try PairsOutputFile(path: path, settings: Self.settings)
            #expect(output.consumedInputs == 0 && output.rowCount == 0)
            try output.append(text: "s0", augmented: "p0")
            try output.skip()  // s1 filtered out
            try output.append(text: "s2, with comma", augmented: "p2")
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "text,text_aug\ns0,p0\n\"s2, with comma\",p2\n")
        #expect(try String(contentsOfFile: path + ".progress", encoding: .utf8).hasPrefix("inputs 3\nrows 2\n"))

        // Reopened as is: sentences 0-2 done.
        do {
            let output = try PairsOutputFile(path: path, settings: Self.settings)
            #expect(output.consumedInputs == 3 && output.rowCount == 2)
        }

        // s3's row reached the file but its progress update did not; then s4's row was cut off mid-write.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("s3,p3\n\"s4 unfinished".utf8))
        try handle.close()
        do {
            let output = try PairsOutputFile(path: path, settings: Self.settings)
            #expect(output.consumedInputs == 4 && output.rowCount == 3)
            try output.append(text: "s4", augmented: "p4")
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "text,text_aug\ns0,p0\n\"s2, with comma\",p2\ns3,p3\ns4,p4\n")
        let resumed = try PairsOutputFile(path: path, settings: Self.settings)
        #expect(resumed.consumedInputs == 5 && resumed.rowCount == 4)
    }

    @Test func filteredSentencesAreNotRetried() throws {
        let scratch = try LoaderScratchDirectory()
        let path = scratch.url.appendingPathComponent("pairs.csv").path
        do {
            let output = try PairsOutputFile(path: path, settings: Self.settings)
            try output.skip()
            try output.skip()
        }
        let output = try PairsOutputFile(path: path, settings: Self.settings)
        #expect(output.consumedInputs == 2 && output.rowCount == 0)
    }

    @Test func inconsistentOutputsAreRefused() throws {
        let scratch = try LoaderScratchDirectory()
        let path = scratch.url.appendingPathComponent("pairs.csv").path
        do {
            let output = try PairsOutputFile(path: path, settings: Self.settings)
            try output.append(text: "a", augmented: "b")
        }
        // Other settings.
        var other = Self.settings
        other["seed"] = "10"
        #expect(throws: GenerationError.self) { try PairsOutputFile(path: path, settings: other) }
        do {
            _ = try PairsOutputFile(path: path, settings: other)
        } catch {
            #expect("\(error)".contains("seed 9 -> 10"))
        }
        // Rows without a progress file.
        try FileManager.default.removeItem(atPath: path + ".progress")
        #expect(throws: GenerationError.outputFile(
            path: path, detail: "has 1 rows but no progress file \(path).progress to resume from; remove it or choose another output")
        ) { try PairsOutputFile(path: path, settings: Self.settings) }
        // Not a pairs file.
        let other2 = scratch.url.appendingPathComponent("other.csv").path
        try Data("id,value\n1,2\n".utf8).write(to: URL(fileURLWithPath: other2))
        #expect(throws: GenerationError.self) { try PairsOutputFile(path: other2, settings: Self.settings) }
    }

    @Test func answersAreCleanedAndFiltered() {
        #expect(PairSynthesizer.cleanAnswer("  \"The cat sat.\"  \nSecond line") == "The cat sat.")
        #expect(PairSynthesizer.cleanAnswer("\n\n“Quoted” answer") == "“Quoted” answer")
        #expect(PairSynthesizer.cleanAnswer("“ Curly ”") == "Curly")
        #expect(PairSynthesizer.cleanAnswer("'It's fine'") == "It's fine")
        #expect(PairSynthesizer.cleanAnswer(" \n \"\" ") == "")
        #expect(PairSynthesizer.cleanAnswer("\"") == "\"")
        #expect(PairSynthesizer.isSameText("The  Cat\tsat.", "the cat sat."))
        #expect(!PairSynthesizer.isSameText("The cat sat", "the cat sat."))
    }
}
