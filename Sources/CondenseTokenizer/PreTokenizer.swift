/// The pre-tokenizer families: how text is cut into words before BPE. Each reproduces its HF
/// `tokenizers` configuration (and llama.cpp's `tokenizer.ggml.pre` of the same name) with a
/// hand-written scanner over Unicode scalars instead of a regex engine.
enum PreTokenizerFamily: Sendable, Equatable {
    /// GPT-2 `ByteLevel(use_regex=true)`:
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// SmolLM: `Digits(individual_digits=true)` then the GPT-2 regex on each piece.
    case smollm
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// Qwen2: as Llama 3 with `\p{N}` (single digits) instead of `\p{N}{1,3}`.
    case qwen2

    /// Family names as GGUF `tokenizer.ggml.pre` spells them.
    init?(name: String) {
        switch name {
        case "gpt2": self = .gpt2
        case "smollm": self = .smollm
        case "llama-bpe": self = .llama3
        case "qwen2": self = .qwen2
        default: return nil
        }
    }

    var name: String {
        switch self {
        case .gpt2: "gpt2"
        case .smollm: "smollm"
        case .llama3: "llama-bpe"
        case .qwen2: "qwen2"
        }
    }
}

/// Character classes the pre-tokenizer regexes distinguish. Whitespace classes come last so that
/// `class >= space` means `\s`.
enum ScalarClass {
    static let letter: UInt8 = 0  // \p{L}
    static let number: UInt8 = 1  // \p{N}
    static let other: UInt8 = 2  // [^\s\p{L}\p{N}]
    static let space: UInt8 = 3  // U+0020, the optional " ?" prefix
    static let newline: UInt8 = 4  // \r or \n
    static let otherWhitespace: UInt8 = 5  // any other \s

    private static let asciiClasses: [UInt8] = (0..<128).map { byte in
        switch UInt8(byte) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"): letter
        case UInt8(ascii: "0")...UInt8(ascii: "9"): number
        case 0x20: space
        case 0x0A, 0x0D: newline
        case 0x09, 0x0B, 0x0C: otherWhitespace
        default: other
        }
    }

    @inline(__always)
    static func of(_ value: UInt32) -> UInt8 {
        if value < 128 { return asciiClasses[Int(value)] }
        guard let scalar = Unicode.Scalar(value) else { return other }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return isKnownToRegexEngine(scalar) ? letter : other
        case .decimalNumber, .letterNumber, .otherNumber:
            return isKnownToRegexEngine(scalar) ? number : other
        default:
            // Unicode White_Space, which is what Oniguruma's \s matches for Unicode text.
            return scalar.properties.isWhitespace ? otherWhitespace : other
        }
    }
}

/// HF tokenizers' regex engine (Oniguruma 6.9.10) knows Unicode 16; characters assigned later are
/// unassigned there, hence `[^\s\p{L}\p{N}]`. Measured: with this rule \p{L}, \p{N} and \s agree with
/// HF on every code point.
@inline(__always)
private func isKnownToRegexEngine(_ scalar: Unicode.Scalar) -> Bool {
    guard let age = scalar.properties.age else { return false }
    return age.major <= 16
}

/// Rust's `char::is_numeric`, which HF's `Digits` pre-tokenizer uses; unlike the regex engine it knows
/// the newest Unicode numbers, as Swift does.
@inline(__always)
func isDigitsPreTokenizerNumber(_ value: UInt32, class scalarClass: UInt8) -> Bool {
    if scalarClass == ScalarClass.number { return true }
    guard value >= 128, scalarClass == ScalarClass.other, let scalar = Unicode.Scalar(value) else { return false }
    switch scalar.properties.generalCategory {
    case .decimalNumber, .letterNumber, .otherNumber: return true
    default: return false
    }
}

/// A run of text between special tokens, decoded into scalars with their classes and UTF-8 offsets.
/// Buffers are reused across segments of one `encode` call.
struct ScalarSegment {
    var scalars: [UInt32] = []
    var classes: [UInt8] = []
    /// Byte offset of each scalar within the text, plus the end offset.
    var byteOffsets: [Int] = []

    /// Decodes well-formed UTF-8 (it comes from a Swift String).
    mutating func load(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int) {
        scalars.removeAll(keepingCapacity: true)
        classes.removeAll(keepingCapacity: true)
        byteOffsets.removeAll(keepingCapacity: true)
        var index = start
        while index < end {
            let lead = UInt32(bytes[index])
            let value: UInt32
            let length: Int
            if lead < 0x80 {
                value = lead
                length = 1
            } else if lead < 0xE0 {
                value = (lead & 0x1F) << 6 | UInt32(bytes[index + 1] & 0x3F)
                length = 2
            } else if lead < 0xF0 {
                value = (lead & 0x0F) << 12 | UInt32(bytes[index + 1] & 0x3F) << 6 | UInt32(bytes[index + 2] & 0x3F)
                length = 3
            } else {
                value = (lead & 0x07) << 18 | UInt32(bytes[index + 1] & 0x3F) << 12
                    | UInt32(bytes[index + 2] & 0x3F) << 6 | UInt32(bytes[index + 3] & 0x3F)
                length = 4
            }
            scalars.append(value)
            classes.append(ScalarClass.of(value))
            byteOffsets.append(index)
            index += length
        }
        byteOffsets.append(end)
    }
}

extension PreTokenizerFamily {
    /// Cuts the whole segment into words, appending each word's end (a scalar index) to `wordEnds`.
    func split(_ segment: ScalarSegment, into wordEnds: inout [Int]) {
        let count = segment.scalars.count
        switch self {
        case .gpt2:
            Self.scanGPT2(segment, from: 0, to: count, into: &wordEnds)
        case .smollm:
            // Digits(individual_digits) isolates every \p{N}; the regex then runs on each piece separately,
            // so its lookahead stops at a digit.
            var pieceStart = 0
            for index in 0..<count
            where isDigitsPreTokenizerNumber(segment.scalars[index], class: segment.classes[index]) {
                Self.scanGPT2(segment, from: pieceStart, to: index, into: &wordEnds)
                wordEnds.append(index + 1)
                pieceStart = index + 1
            }
            Self.scanGPT2(segment, from: pieceStart, to: count, into: &wordEnds)
        case .llama3:
            Self.scanLlama3(segment, maximumDigits: 3, into: &wordEnds)
        case .qwen2:
            Self.scanLlama3(segment, maximumDigits: 1, into: &wordEnds)
        }
    }

    private static let apostrophe = UInt32(UInt8(ascii: "'"))

    /// Length of a contraction ('s 't 're 've 'm 'll 'd) at `index`, or nil.
    @inline(__always)
    private static func contractionLength(
        _ scalars: [UInt32], at index: Int, limit: Int, caseInsensitive: Bool
    ) -> Int? {
        guard index + 1 < limit else { return nil }
        func folded(_ value: UInt32) -> UInt32 {
            guard caseInsensitive else { return value }
            if (0x41...0x5A).contains(value) { return value | 0x20 }
            // LATIN SMALL LETTER LONG S case-folds to "s" (Oniguruma's (?i) honours it).
            return value == 0x17F ? UInt32(UInt8(ascii: "s")) : value
        }
        switch folded(scalars[index + 1]) {
        case UInt32(UInt8(ascii: "s")), UInt32(UInt8(ascii: "t")), UInt32(UInt8(ascii: "m")), UInt32(UInt8(ascii: "d")):
            return 2
        case UInt32(UInt8(ascii: "r")), UInt32(UInt8(ascii: "v")):
            guard index + 2 < limit, folded(scalars[index + 2]) == UInt32(UInt8(ascii: "e")) else { return nil }
            return 3
        case UInt32(UInt8(ascii: "l")):
            guard index + 2 < limit, folded(scalars[index + 2]) == UInt32(UInt8(ascii: "l")) else { return nil }
            return 3
        default:
            return nil
        }
    }

    @inline(__always)
    private static func runEnd(_ classes: [UInt8], from start: Int, limit: Int, of runClass: UInt8) -> Int {
        var end = start
        while end < limit, classes[end] == runClass { end += 1 }
        return end
    }

    @inline(__always)
    private static func whitespaceRunEnd(_ classes: [UInt8], from start: Int, limit: Int) -> Int {
        var end = start
        while end < limit, classes[end] >= ScalarClass.space { end += 1 }
        return end
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` on scalars [start, limit).
    private static func scanGPT2(_ segment: ScalarSegment, from start: Int, to limit: Int, into wordEnds: inout [Int]) {
        let classes = segment.classes
        var index = start
        while index < limit {
            let current = classes[index]
            var end: Int
            if segment.scalars[index] == apostrophe,
                let length = contractionLength(segment.scalars, at: index, limit: limit, caseInsensitive: false)
            {
                end = index + length
            } else {
                let runStart = current == ScalarClass.space && index + 1 < limit ? index + 1 : index
                let runClass = classes[runStart]
                if runClass < ScalarClass.space {
                    end = runEnd(classes, from: runStart, limit: limit, of: runClass)
                } else {
                    // \s+(?!\S) leaves the last whitespace before a non-space to prefix the next word;
                    // a lone whitespace before a non-space falls to \s+.
                    end = whitespaceRunEnd(classes, from: index, limit: limit)
                    if end < limit, end - index > 1 { end -= 1 }
                }
            }
            wordEnds.append(end)
            index = end
        }
    }

    /// The Llama 3 / Qwen2 split regex on the whole segment; `maximumDigits` is 3 for `\p{N}{1,3}`.
    private static func scanLlama3(_ segment: ScalarSegment, maximumDigits: Int, into wordEnds: inout [Int]) {
        let classes = segment.classes
        let limit = classes.count
        var index = 0
        while index < limit {
            let current = classes[index]
            var end: Int
            if segment.scalars[index] == apostrophe,
                let length = contractionLength(segment.scalars, at: index, limit: limit, caseInsensitive: true)
            {
                end = index + length
            } else if current == ScalarClass.letter {
                end = runEnd(classes, from: index, limit: limit, of: ScalarClass.letter)
            } else if current != ScalarClass.newline, current != ScalarClass.number, index + 1 < limit,
                classes[index + 1] == ScalarClass.letter
            {
                // [^\r\n\p{L}\p{N}]?\p{L}+ : one leading non-letter (space, punctuation, tab) joins the word.
                end = runEnd(classes, from: index + 1, limit: limit, of: ScalarClass.letter)
            } else if current == ScalarClass.number {
                end = min(runEnd(classes, from: index, limit: limit, of: ScalarClass.number), index + maximumDigits)
            } else if current == ScalarClass.other
                || (current == ScalarClass.space && index + 1 < limit && classes[index + 1] == ScalarClass.other)
            {
                // ?[^\s\p{L}\p{N}]+[\r\n]*
                let runStart = current == ScalarClass.other ? index : index + 1
                end = runEnd(classes, from: runStart, limit: limit, of: ScalarClass.other)
                end = runEnd(classes, from: end, limit: limit, of: ScalarClass.newline)
            } else {
                let runEnd = whitespaceRunEnd(classes, from: index, limit: limit)
                // \s*[\r\n]+ ends at the last newline of the run.
                var lastNewline = runEnd - 1
                while lastNewline >= index, classes[lastNewline] != ScalarClass.newline { lastNewline -= 1 }
                if lastNewline >= index {
                    end = lastNewline + 1
                } else {
                    end = runEnd
                    if end < limit, end - index > 1 { end -= 1 }
                }
            }
            wordEnds.append(end)
            index = end
        }
    }
}
