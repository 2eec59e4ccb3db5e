import Foundation

/// The CSV of generated pairs: a `text,text_aug` header, one row per pair, RFC 4180 quoting (a field with
/// a comma, quote, CR or LF is quoted, quotes inside doubled), LF line ends.
public enum PairsCSV {
    public static let header = ["text", "text_aug"]

    public static func row(_ fields: [String]) -> String {
        fields.map(field).joined(separator: ",") + "\n"
    }

    static func field(_ value: String) -> String {
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else {
            return value
        }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The records of `bytes` that end with a line break (outside quotes), and the byte length they span;
    /// anything after it is an unfinished record (an interrupted write).
    public static func completeRecords(_ bytes: [UInt8]) -> (records: [[String]], byteCount: Int) {
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), newline = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")
        var records: [[String]] = [], fields: [String] = [], field: [UInt8] = []
        var inQuotes = false, completeEnd = 0, index = 0
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if inQuotes {
                if byte != quote {
                    field.append(byte)
                } else if index < bytes.count, bytes[index] == quote {
                    field.append(quote)
                    index += 1
                } else {
                    inQuotes = false
                }
            } else if byte == quote {
                inQuotes = true
            } else if byte == comma {
                fields.append(String(decoding: field, as: UTF8.self))
                field.removeAll(keepingCapacity: true)
            } else if byte == newline || byte == cr {
                if byte == cr, index < bytes.count, bytes[index] == newline { index += 1 }
                fields.append(String(decoding: field, as: UTF8.self))
                field.removeAll(keepingCapacity: true)
                records.append(fields)
                fields.removeAll()
                completeEnd = index
            } else {
                field.append(byte)
            }
        }
        return (records, completeEnd)
    }
}

/// An append-only pairs CSV that a later run can resume. Next to `OUT` lives `OUT.progress`: how many input
/// sentences are done (kept or filtered out), how many rows the CSV holds, and the settings that produced
/// them. Each row is written with one write call, then the progress file is replaced atomically; so after
/// an interruption the CSV holds the rows of the progress file, possibly one more (its progress update
/// was lost) and possibly an unfinished last line, which reopening cuts off.
public final class PairsOutputFile {
    public let path: String
    public var progressPath: String { path + ".progress" }
    /// Input sentences done: the next run starts at this input index.
    public private(set) var consumedInputs = 0
    public private(set) var rowCount = 0
    /// Settings that determine the output (model, sampling, instruction), stored in the progress file: a run
    /// with other settings would not continue the same output.
    public let settings: [String: String]
    private let handle: FileHandle

    /// Creates `path` with the CSV header, or resumes it: an existing file is accepted only with its
    /// progress file and the same settings.
    public init(path: String, settings: [String: String]) throws(GenerationError) {
        self.path = path
        self.settings = settings
        let manager = FileManager.default
        let existing = manager.fileExists(atPath: path) ? try Self.read(path) : []
        let (records, completeLength) = PairsCSV.completeRecords(existing)
        let rows = max(0, records.count - 1)
        if let header = records.first, header != PairsCSV.header {
            throw .outputFile(path: path, detail: "is not a pairs file (header \(header.joined(separator: ",")), expected text,text_aug)")
        }
        let progressPath = path + ".progress"
        let hasProgress = manager.fileExists(atPath: progressPath)
        if !records.isEmpty, hasProgress {
            let progress = try Self.readProgress(progressPath)
            if progress.settings != settings {
                let keys = Set(progress.settings.keys).union(settings.keys).sorted()
                    .filter { progress.settings[$0] != settings[$0] }
                let changes = keys.map { "\($0) \(progress.settings[$0] ?? "-") -> \(settings[$0] ?? "-")" }
                throw .outputFile(path: path, detail: "was generated with other settings (\(changes.joined(separator: "; "))): "
                    + "resume with the same settings or choose another output")
            }
            switch rows - progress.rows {
            case 0: consumedInputs = progress.inputs
            case 1: consumedInputs = progress.inputs + 1  // the row was written, its progress update was not
            default:
                throw .outputFile(path: path, detail: "has \(rows) complete rows but its progress file records \(progress.rows)")
            }
            rowCount = rows
        } else if rows > 0 {
            throw .outputFile(path: path, detail: "has \(rows) rows but no progress file \(progressPath) to resume from; "
                + "remove it or choose another output")
        }

        do {
            if records.isEmpty {
                try Data(PairsCSV.row(PairsCSV.header).utf8).write(to: URL(fileURLWithPath: path))
            }
            handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
            if !records.isEmpty {
                try handle.truncate(atOffset: UInt64(completeLength))
            }
            try handle.seekToEnd()
        } catch {
            throw .outputFile(path: path, detail: error.localizedDescription)
        }
        try writeProgress()
    }

    deinit { try? handle.close() }

    /// Appends the row of the next input sentence.
    public func append(text: String, augmented: String) throws(GenerationError) {
        do { try handle.write(contentsOf: Data(PairsCSV.row([text, augmented]).utf8)) } catch {
            throw .outputFile(path: path, detail: error.localizedDescription)
        }
        rowCount += 1
        consumedInputs += 1
        try writeProgress()
    }

    /// Records that the next input sentence is done without a row (its output was filtered out).
    public func skip() throws(GenerationError) {
        consumedInputs += 1
        try writeProgress()
    }

    private func writeProgress() throws(GenerationError) {
        var text = "inputs \(consumedInputs)\nrows \(rowCount)\n"
        for key in settings.keys.sorted() { text += "setting \(key) \(Self.escape(settings[key] ?? ""))\n" }
        do { try Data(text.utf8).write(to: URL(fileURLWithPath: progressPath), options: .atomic) } catch {
            throw .outputFile(path: progressPath, detail: error.localizedDescription)
        }
    }

    private struct Progress {
        var inputs = 0
        var rows = 0
        var settings: [String: String] = [:]
    }

    private static func readProgress(_ path: String) throws(GenerationError) -> Progress {
        let text = String(decoding: try read(path), as: UTF8.self)
        var progress = Progress(), sawInputs = false, sawRows = false
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            switch (parts.first, parts.count) {
            case ("inputs", 2):
                guard let value = Int(parts[1]), value >= 0 else { break }
                progress.inputs = value
                sawInputs = true
            case ("rows", 2):
                guard let value = Int(parts[1]), value >= 0 else { break }
                progress.rows = value
                sawRows = true
            case ("setting", 3):
                progress.settings[parts[1]] = unescape(parts[2])
            default:
                throw .outputFile(path: path, detail: "unreadable progress line '\(line)'")
            }
        }
        guard sawInputs, sawRows, progress.rows <= progress.inputs else {
            throw .outputFile(path: path, detail: "progress file lacks valid 'inputs' and 'rows' lines")
        }
        return progress
    }

    private static func read(_ path: String) throws(GenerationError) -> [UInt8] {
        do { return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            throw .outputFile(path: path, detail: error.localizedDescription)
        }
    }

    /// One line per setting: backslashes and line breaks escaped.
    private static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
            .replacingOccurrences(of: "\r", with: "\\r")
    }

    private static func unescape(_ value: String) -> String {
        var result = "", escaping = false
        for character in value {
            if escaping {
                result.append(character == "n" ? "\n" : character == "r" ? "\r" : character)
                escaping = false
            } else if character == "\\" {
                escaping = true
            } else {
                result.append(character)
            }
        }
        return result
    }
}
