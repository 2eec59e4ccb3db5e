import Foundation

/// A text and its positive, as read from a pairs file (before any prompt, augmentation or tokenization).
public struct TextPair: Sendable, Equatable {
    public var text: String
    /// The positive (`text_aug`): the side the noise augmentations apply to.
    public var positive: String

    public init(text: String, positive: String) {
        self.text = text
        self.positive = positive
    }
}

/// Why a pairs file could not be read; malformed content names its 1-based line.
public enum PairsFileError: Error, Equatable, Sendable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case unsupportedExtension(path: String)
    case malformed(path: String, line: Int, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): "cannot read \(path): \(reason)"
        case let .unsupportedExtension(path): "\(path): unsupported pairs format (use .csv or .jsonl)"
        case let .malformed(path, line, reason): "\(path):\(line): \(reason)"
        }
    }
}

/// Training pairs from a file:
/// - `.csv` (RFC 4180: quoted fields may hold commas, newlines and doubled quotes): two columns
///   `text,text_aug`. The first row is a header when it names a `text` column and a `text_aug` or
///   `positive` column (other columns are then ignored); without one, every row has exactly two fields.
/// - `.jsonl`: one object per line with string fields `text` and `text_aug` (or `positive`).
/// Blank lines are ignored; rows where either side is empty after trimming are skipped and counted.
public struct PairsFile: Sendable, Equatable {
    public var pairs: [TextPair]
    /// Rows dropped because a side was empty or whitespace only.
    public var skippedEmptyRows: Int

    public init(pairs: [TextPair], skippedEmptyRows: Int) {
        self.pairs = pairs
        self.skippedEmptyRows = skippedEmptyRows
    }

    /// Column names accepted for the positive side.
    static let positiveColumns = ["text_aug", "positive"]

    public static func read(path: String) throws(PairsFileError) -> PairsFile {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        guard var content = String(data: data, encoding: .utf8) else { throw .unreadable(path: path, reason: "not valid UTF-8") }
        if content.hasPrefix("\u{FEFF}") { content.removeFirst() }
        switch (path as NSString).pathExtension.lowercased() {
        case "csv": return try parseCSV(content, path: path)
        case "jsonl": return try parseJSONLines(content, path: path)
        default: throw .unsupportedExtension(path: path)
        }
    }

    public static func parseCSV(_ content: String, path: String) throws(PairsFileError) -> PairsFile {
        let rows = try CSVReader.rows(content, path: path)
        guard let first = rows.first else { return PairsFile(pairs: [], skippedEmptyRows: 0) }
        let names = first.fields.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let header = names.firstIndex(of: "text").flatMap { text in
            positiveColumns.lazy.compactMap { names.firstIndex(of: $0) }.first.map { (text: text, positive: $0) }
        }
        let (textColumn, positiveColumn) = header ?? (0, 1)
        let width = header == nil ? 2 : first.fields.count
        var file = PairsFile(pairs: [], skippedEmptyRows: 0)
        for row in rows.dropFirst(header == nil ? 0 : 1) {
            guard row.fields.count == width else {
                throw .malformed(path: path, line: row.line, reason: "expected \(width) fields, found \(row.fields.count)")
            }
            file.append(text: row.fields[textColumn], positive: row.fields[positiveColumn])
        }
        return file
    }

    public static func parseJSONLines(_ content: String, path: String) throws(PairsFileError) -> PairsFile {
        var file = PairsFile(pairs: [], skippedEmptyRows: 0)
        // Split on LF bytes: as Characters, "\r\n" is one grapheme that "\n" would not match.
        for (offset, line) in content.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            let trimmed = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any] else {
                throw .malformed(path: path, line: number, reason: "not a JSON object")
            }
            guard let text = object["text"] as? String else {
                throw .malformed(path: path, line: number, reason: "expected a string field \"text\"")
            }
            guard let positive = positiveColumns.lazy.compactMap({ object[$0] as? String }).first else {
                throw .malformed(path: path, line: number, reason: "expected a string field \"text_aug\" or \"positive\"")
            }
            file.append(text: text, positive: positive)
        }
        return file
    }

    private mutating func append(text: String, positive: String) {
        if text.allSatisfy(\.isWhitespace) || positive.allSatisfy(\.isWhitespace) {
            skippedEmptyRows += 1
        } else {
            pairs.append(TextPair(text: text, positive: positive))
        }
    }
}

/// RFC 4180 records with their starting line. A line with nothing on it is not a record; CR before LF is
/// dropped outside quotes.
enum CSVReader {
    struct Row {
        var line: Int
        var fields: [String]
    }

    static func rows(_ content: String, path: String) throws(PairsFileError) -> [Row] {
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), newline = UInt8(ascii: "\n"), carriageReturn = UInt8(ascii: "\r")
        let bytes = Array(content.utf8)
        var rows: [Row] = []
        var fields: [String] = []
        var field: [UInt8] = []
        var line = 1, rowStart = 1, quotedFieldStart = 1
        var inQuotes = false
        /// The current field was quoted and its closing quote seen: only a separator may follow.
        var closedQuote = false
        func endField() {
            fields.append(String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
            closedQuote = false
        }
        var i = 0
        while i < bytes.count {
            let byte = bytes[i]
            if inQuotes {
                if byte == quote {
                    if i + 1 < bytes.count, bytes[i + 1] == quote {
                        field.append(quote)
                        i += 1
                    } else {
                        inQuotes = false
                        closedQuote = true
                    }
                } else {
                    if byte == newline { line += 1 }
                    field.append(byte)
                }
            } else {
                switch byte {
                case comma: endField()
                case newline:
                    if !fields.isEmpty || !field.isEmpty || closedQuote {
                        endField()
                        rows.append(Row(line: rowStart, fields: fields))
                        fields.removeAll()
                    }
                    line += 1
                    rowStart = line
                case carriageReturn where i + 1 < bytes.count && bytes[i + 1] == newline: break
                case quote:
                    guard field.isEmpty, !closedQuote else {
                        throw .malformed(path: path, line: line, reason: "quote inside an unquoted field (quote the field and double the quote)")
                    }
                    inQuotes = true
                    quotedFieldStart = line
                default:
                    guard !closedQuote else {
                        throw .malformed(path: path, line: line, reason: "text after the closing quote of a field")
                    }
                    field.append(byte)
                }
            }
            i += 1
        }
        if inQuotes { throw .malformed(path: path, line: quotedFieldStart, reason: "unterminated quoted field") }
        if !fields.isEmpty || !field.isEmpty || closedQuote {
            endField()
            rows.append(Row(line: rowStart, fields: fields))
        }
        return rows
    }
}
