@testable import CondenseTokenizer

/// Fixture files written by scripts/gen-tokenizer-fixtures.py from HF `tokenizers`.
enum Fixtures {
    static let families = ["smollm", "llama-bpe", "qwen2", "gpt2"]

    static var directory: String {
        let file = "\(#filePath)"
        guard let slash = file.lastIndex(of: "/") else { return "Fixtures" }
        return String(file[..<slash]) + "/Fixtures"
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        let path = directory + "/" + name
        guard let file = fopen(path, "rb") else { throw FixtureError.unreadable(path) }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return bytes
    }

    static func tokenizerJSON(_ family: String) throws -> [UInt8] {
        try bytes("tokenizer-\(family).json")
    }

    static func tokenizer(_ family: String) throws -> Tokenizer {
        try Tokenizer(spec: TokenizerSpec.fromHuggingFace(tokenizerJSON: tokenizerJSON(family), tokenizerConfigJSON: nil))
    }

    /// The corpus and, per family, the ids HF `tokenizers` produced for each corpus string.
    static func expectedIDs() throws -> (corpus: [String], ids: [String: [[Int32]]]) {
        let root = try JSONParser.parse(bytes("expected-ids.json"), file: "expected-ids.json")
        guard case .array(let corpusValues)? = root["corpus"] else { throw FixtureError.malformed("corpus") }
        let corpus = corpusValues.compactMap(\.stringValue)
        var ids: [String: [[Int32]]] = [:]
        for family in families {
            guard let value = root["ids"]?[family] else { throw FixtureError.malformed("ids.\(family)") }
            ids[family] = try idLists(value)
        }
        return (corpus, ids)
    }

    static func idLists(_ value: JSONValue) throws -> [[Int32]] {
        guard case .array(let lists) = value else { throw FixtureError.malformed("id lists") }
        return try lists.map { list in
            guard case .array(let items) = list else { throw FixtureError.malformed("id list") }
            return try items.map { item in
                guard let id = item.intValue else { throw FixtureError.malformed("id") }
                return Int32(id)
            }
        }
    }

    enum FixtureError: Error {
        case unreadable(String)
        case malformed(String)
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
