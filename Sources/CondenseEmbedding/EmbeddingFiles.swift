import Foundation

/// File forms of a list of embedding results (one per input text, input order).
public enum EmbeddingFiles {
    /// One JSON object per line: `{"index": i, "embedding": [...]}`, or `{"index": i, "error": "..."}`
    /// for a failed item. Numbers are written in their shortest round-trip form; non-finite
    /// components (not valid JSON numbers) as null.
    public static func jsonLines(_ results: [Result<[Float], EmbeddingError>]) -> [UInt8] {
        jsonLines(describing: results)
    }

    /// `jsonLines` for errors of another kind (e.g. a server's item errors), written as their description.
    public static func jsonLines(describing results: [Result<[Float], some Error & CustomStringConvertible>]) -> [UInt8] {
        var out = ""
        out.reserveCapacity(results.count * 12 * ((try? results.first?.get().count) ?? 1))
        for (index, result) in results.enumerated() {
            switch result {
            case .success(let vector):
                out += "{\"index\": \(index), \"embedding\": ["
                for (position, value) in vector.enumerated() {
                    if position > 0 { out += ", " }
                    out += value.isFinite ? "\(value)" : "null"
                }
                out += "]}\n"
            case .failure(let error):
                out += "{\"index\": \(index), \"error\": \(jsonString(error.description))}\n"
            }
        }
        return Array(out.utf8)
    }

    /// A float32 `.npy` matrix of shape (results, dimensions); a failed item is a row of NaN so that
    /// row numbers keep matching input positions.
    public static func npy(_ results: [Result<[Float], some Error>], dimensions: Int) -> [UInt8] {
        var values: [Float] = []
        values.reserveCapacity(results.count * dimensions)
        for result in results {
            switch result {
            case .success(let vector) where vector.count == dimensions: values += vector
            case .success, .failure: values += repeatElement(Float.nan, count: dimensions)
            }
        }
        return NPYFormat.float32Matrix(rows: results.count, columns: dimensions, values: values)
    }

    static func jsonString(_ text: String) -> String {
        var escaped = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x20: escaped += String(format: "\\u%04x", scalar.value)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped + "\""
    }
}
