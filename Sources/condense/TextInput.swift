import Foundation

/// Errors reading the CLI's input files; each names the file and, where it applies, the line.
enum TextInputError: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case unsupportedExtension(path: String)
    case malformed(path: String, line: Int, reason: String)
    case missingColumn(path: String, column: String, header: [String])

    var description: String {
        switch self {
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .unsupportedExtension(let path): "\(path): unsupported input format (use .txt, .jsonl or .csv)"
        case .malformed(let path, let line, let reason): "\(path):\(line): \(reason)"
        case .missingColumn(let path, let column, let header):
            "\(path): no '\(column)' column (header: \(header.joined(separator: ",")))"
        }
    }
}

/// Reads the texts of a CLI input file:
/// - `.txt`: one text per line (empty lines are texts too, so indexes match line numbers - 1);
/// - `.jsonl`: one JSON object per line with a string field `text` (the only way to pass newlines);
/// - `.csv`: RFC 4180 with a header row holding a `text` column.
enum TextInput {
    static func readTexts(path: String) throws(TextInputError) -> [String] {
        let content = try readFile(path)
        switch (path as NSString).pathExtension.lowercased() {
        case "txt":
            var lines = content.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
            if lines.last == "" { lines.removeLast() }
            return lines
        case "jsonl":
            return try readJSONLines(content, path: path).map { (line, object) throws(TextInputError) in
                guard let text = object["text"] as? String else {
                    throw .malformed(path: path, line: line, reason: "expected a string field \"text\"")
                }
                return text
            }
        case "csv":
            let rows = try CSV.parse(content, path: path)
            guard let header = rows.first else { return [] }
            guard let column = header.fields.firstIndex(of: "text") else {
                throw .missingColumn(path: path, column: "text", header: header.fields)
            }
            return try rows.dropFirst().map { (row) throws(TextInputError) in
                guard column < row.fields.count else {
                    throw .malformed(path: path, line: row.line, reason: "row has \(row.fields.count) fields, no 'text' value")
                }
                return row.fields[column]
            }
        default:
            throw .unsupportedExtension(path: path)
        }
    }

    static func readFile(_ path: String) throws(TextInputError) -> String {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .unreadable(path: path, reason: "not valid UTF-8")
        }
        return text
    }

    /// Non-empty lines of a JSONL document as (1-based line number, object).
    static func readJSONLines(_ content: String, path: String) throws(TextInputError) -> [(Int, [String: Any])] {
        var objects: [(Int, [String: Any])] = []
        for (offset, line) in content.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any] else {
                throw .malformed(path: path, line: offset + 1, reason: "not a JSON object")
            }
            objects.append((offset + 1, object))
        }
        return objects
    }
}

/// A small RFC 4180 reader: quoted fields may hold commas, doubled quotes and newlines.
enum CSV {
    struct Row {
        var line: Int       // 1-based line where the row starts
        var fields: [String]
    }

    static func parse(_ content: String, path: String) throws(TextInputError) -> [Row] {
        var rows: [Row] = []
        var fields: [String] = []
        var field: [UInt8] = []
        var inQuotes = false
        var line = 1
        var rowStart = 1
        let bytes = Array(content.utf8)
        var i = 0
        func endField() { fields.append(String(decoding: field, as: UTF8.self)); field.removeAll(keepingCapacity: true) }
        while i < bytes.count {
            let byte = bytes[i]
            if inQuotes {
                if byte == UInt8(ascii: "\"") {
                    if i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "\"") { field.append(byte); i += 1 } else { inQuotes = false }
                } else {
                    if byte == UInt8(ascii: "\n") { line += 1 }
                    field.append(byte)
                }
            } else {
                switch byte {
                case UInt8(ascii: "\""):
                    guard field.isEmpty else { throw .malformed(path: path, line: line, reason: "quote inside an unquoted field") }
                    inQuotes = true
                case UInt8(ascii: ","): endField()
                case UInt8(ascii: "\r"): break
                case UInt8(ascii: "\n"):
                    endField()
                    rows.append(Row(line: rowStart, fields: fields))
                    fields.removeAll()
                    line += 1
                    rowStart = line
                default: field.append(byte)
                }
            }
            i += 1
        }
        if inQuotes { throw .malformed(path: path, line: rowStart, reason: "unterminated quoted field") }
        if !field.isEmpty || !fields.isEmpty {
            endField()
            rows.append(Row(line: rowStart, fields: fields))
        }
        return rows
    }
}
