/// Byte-level BPE tokenizer (GPT-2 style) built from the model's own vocabulary, merges and
/// pre-tokenizer family. Produces the token ids of HF `tokenizers` for the supported families.
public final class Tokenizer: Sendable {
    private let tokens: [String]
    private let tokenTypes: [Int32]
    private let family: PreTokenizerFamily
    /// Whole words found in the vocabulary skip BPE (HF `ignore_merges`, llama.cpp does it for Llama 3).
    private let wordVocabulary: ByteStringTable?
    /// Token id of each single byte, -1 when the vocabulary lacks it (HF then drops the byte).
    private let byteTokenIDs: [Int32]
    private let merges: MergeTable
    private let specialTokens: SpecialTokenMatcher
    /// What each token decodes to, `decodedBytes[decodedOffsets[id] ..< decodedOffsets[id + 1]]`.
    private let decodedBytes: [UInt8]
    private let decodedOffsets: [Int]
    private let addBOS: Bool
    private let addEOS: Bool
    public let bosTokenID: Int32?
    public let eosTokenID: Int32?

    public var vocabularySize: Int { tokens.count }

    /// Fails on an unknown pre-tokenizer family, mismatched token types, BOS/EOS outside the
    /// vocabulary, or a merge rule whose tokens are not in the vocabulary.
    public init(spec: TokenizerSpec) throws(TokenizerError) {
        guard let family = PreTokenizerFamily(name: spec.preTokenizer) else {
            throw .unsupportedPreTokenizer("'\(spec.preTokenizer)'")
        }
        guard !spec.tokens.isEmpty else { throw .emptyVocabulary }
        guard spec.tokenTypes.count == spec.tokens.count else {
            throw .tokenTypeCountMismatch(tokens: spec.tokens.count, tokenTypes: spec.tokenTypes.count)
        }
        for (name, id) in [("BOS", spec.bosTokenID), ("EOS", spec.eosTokenID)] {
            if let id, id < 0 || Int(id) >= spec.tokens.count {
                throw .specialTokenIDOutOfRange(name: name, id: id, vocabularySize: spec.tokens.count)
            }
        }
        self.family = family
        tokens = spec.tokens
        tokenTypes = spec.tokenTypes
        bosTokenID = spec.bosTokenID
        eosTokenID = spec.eosTokenID
        addBOS = spec.addBOS
        addEOS = spec.addEOS

        var idForToken: [String: Int32] = [:]
        idForToken.reserveCapacity(spec.tokens.count)
        for (id, token) in spec.tokens.enumerated() { idForToken[token] = Int32(id) }

        var byteTokenIDs = [Int32](repeating: -1, count: 256)
        for byte in 0..<256 {
            let text = ByteLevel.encode([UInt8(byte)])
            byteTokenIDs[byte] = idForToken[text] ?? -1
        }
        self.byteTokenIDs = byteTokenIDs

        var merges = MergeTable(expectedCount: spec.merges.count)
        for (rank, rule) in spec.merges.enumerated() {
            // Split at the first space after the first character (llama.cpp's rule), so a left part
            // that is itself a space still parses.
            let utf8 = Array(rule.utf8)
            guard utf8.count >= 3, let separator = utf8[1...].firstIndex(of: 0x20), separator + 1 < utf8.count else {
                throw .malformedMerge(rule)
            }
            let left = String(decoding: utf8[..<separator], as: UTF8.self)
            let right = String(decoding: utf8[(separator + 1)...], as: UTF8.self)
            guard let leftID = idForToken[left] else { throw .mergeReferencesUnknownToken(merge: rule, token: left) }
            guard let rightID = idForToken[right] else { throw .mergeReferencesUnknownToken(merge: rule, token: right) }
            guard let mergedID = idForToken[left + right] else {
                throw .mergeReferencesUnknownToken(merge: rule, token: left + right)
            }
            merges.insert(left: leftID, right: rightID, rank: Int32(rank), merged: mergedID)
        }
        self.merges = merges

        var specials: [(id: Int32, bytes: [UInt8])] = []
        var decodedBytes: [UInt8] = []
        var decodedOffsets: [Int] = [0]
        var wordVocabulary = family == .llama3 ? ByteStringTable(expectedCount: spec.tokens.count) : nil
        for (index, token) in spec.tokens.enumerated() {
            let id = Int32(index)
            let type = spec.tokenTypes[index]
            let isSpecial = type == TokenizerSpec.controlTokenType || type == TokenizerSpec.userDefinedTokenType
            let byteForm = ByteLevel.decode(token)
            if isSpecial {
                specials.append((id, Array(token.utf8)))
                // Special tokens decode to their own text, so text containing them round-trips.
                decodedBytes.append(contentsOf: token.utf8)
            } else {
                // HF's ByteLevel decoder: a token with a character outside the byte mapping stays as its UTF-8.
                decodedBytes.append(contentsOf: byteForm ?? Array(token.utf8))
            }
            decodedOffsets.append(decodedBytes.count)
            if let byteForm { wordVocabulary?.insert(byteForm, id: id) }
        }
        specialTokens = SpecialTokenMatcher(tokens: specials)
        self.decodedBytes = decodedBytes
        self.decodedOffsets = decodedOffsets
        self.wordVocabulary = wordVocabulary
    }

    /// Token ids of `text`. Special tokens written in the text (e.g. `<|im_start|>`) become their
    /// single id; `addSpecialTokens` applies the model's add_bos/add_eos.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        var output: [Int32] = []
        output.reserveCapacity(text.utf8.count / 3 + 2)
        if addSpecialTokens, addBOS, let bosTokenID { output.append(bosTokenID) }
        var text = text
        text.withUTF8 { bytes in
            var scratch = EncodingScratch()
            var segmentStart = 0
            if !specialTokens.isEmpty {
                var position = 0
                while position < bytes.count {
                    if let special = specialTokens.match(bytes, at: position) {
                        encodeSegment(bytes, from: segmentStart, to: position, scratch: &scratch, into: &output)
                        output.append(special.id)
                        position += special.length
                        segmentStart = position
                    } else {
                        position += 1
                    }
                }
            }
            encodeSegment(bytes, from: segmentStart, to: bytes.count, scratch: &scratch, into: &output)
        }
        if addSpecialTokens, addEOS, let eosTokenID { output.append(eosTokenID) }
        return output
    }

    /// Text of the ids: byte-level tokens are turned back into bytes, special tokens into their text.
    /// Invalid UTF-8 (e.g. a cut multi-byte character) becomes U+FFFD; unknown ids are skipped.
    public func decode(_ ids: [Int32]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids where id >= 0 && Int(id) < tokens.count {
            bytes.append(contentsOf: decodedBytes[decodedOffsets[Int(id)]..<decodedOffsets[Int(id) + 1]])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The raw bytes `id` decodes to (a token may hold part of a UTF-8 character); empty for unknown ids.
    public func bytes(of id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < tokens.count else { return [] }
        return Array(decodedBytes[decodedOffsets[Int(id)]..<decodedOffsets[Int(id) + 1]])
    }

    /// The vocabulary entry (byte-level form, e.g. "Ġthe") of `id`.
    public func token(for id: Int32) -> String? {
        guard id >= 0, Int(id) < tokens.count else { return nil }
        return tokens[Int(id)]
    }

    private func encodeSegment(
        _ text: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int,
        scratch: inout EncodingScratch, into output: inout [Int32]
    ) {
        guard start < end else { return }
        scratch.segment.load(text, from: start, to: end)
        scratch.wordEnds.removeAll(keepingCapacity: true)
        family.split(scratch.segment, into: &scratch.wordEnds)
        var wordStart = 0
        for wordEnd in scratch.wordEnds {
            let byteStart = scratch.segment.byteOffsets[wordStart]
            let byteEnd = scratch.segment.byteOffsets[wordEnd]
            encodeWord(UnsafeBufferPointer(rebasing: text[byteStart..<byteEnd]), scratch: &scratch.merge, into: &output)
            wordStart = wordEnd
        }
    }

    /// BPE on one word, exactly as HF's `Word::merge_all`: repeatedly apply the lowest-ranked merge,
    /// leftmost first, using a heap of candidate pairs with lazy invalidation (O(n log n) for long words).
    private func encodeWord(_ word: UnsafeBufferPointer<UInt8>, scratch: inout MergeScratch, into output: inout [Int32]) {
        if word.count == 1 {
            let id = byteTokenIDs[Int(word[0])]
            if id >= 0 { output.append(id) }
            return
        }
        if let wordVocabulary, let id = wordVocabulary.lookup(word) {
            output.append(id)
            return
        }
        scratch.reset()
        for byte in word {
            let id = byteTokenIDs[Int(byte)]
            if id >= 0 { scratch.appendSymbol(id) }
        }
        let count = scratch.ids.count
        guard count > 1 else {
            output.append(contentsOf: scratch.ids)
            return
        }
        for position in 0..<(count - 1) {
            if let merge = merges.lookup(left: scratch.ids[position], right: scratch.ids[position + 1]) {
                scratch.push(rank: merge >> 32, position: position)
            }
        }
        while let candidate = scratch.popMinimum() {
            let position = candidate.position
            let next = Int(scratch.next[position])
            // Stale candidates: the left symbol was absorbed, it is now last, or the pair changed.
            guard scratch.ids[position] >= 0, next >= 0,
                let merge = merges.lookup(left: scratch.ids[position], right: scratch.ids[next]),
                merge >> 32 == candidate.rank
            else { continue }
            scratch.ids[position] = Int32(truncatingIfNeeded: merge & 0xFFFF_FFFF)
            scratch.ids[next] = -1
            let afterNext = scratch.next[next]
            scratch.next[position] = afterNext
            if afterNext >= 0 { scratch.previous[Int(afterNext)] = Int32(position) }
            let previous = Int(scratch.previous[position])
            if previous >= 0, let merge = merges.lookup(left: scratch.ids[previous], right: scratch.ids[position]) {
                scratch.push(rank: merge >> 32, position: previous)
            }
            if afterNext >= 0, let merge = merges.lookup(left: scratch.ids[position], right: scratch.ids[Int(afterNext)]) {
                scratch.push(rank: merge >> 32, position: position)
            }
        }
        var position = 0
        while position >= 0 {
            output.append(scratch.ids[position])
            position = Int(scratch.next[position])
        }
    }
}

/// Buffers reused by one `encode` call, so words cost no allocations.
struct EncodingScratch {
    var segment = ScalarSegment()
    var wordEnds: [Int] = []
    var merge = MergeScratch()
}

/// BPE state of one word: symbols as a linked list over their first byte positions, plus a min-heap
/// of candidate merges keyed by (rank, position).
struct MergeScratch {
    /// Token id per symbol, -1 once merged into its left neighbour.
    var ids: [Int32] = []
    var previous: [Int32] = []
    var next: [Int32] = []
    /// rank << 32 | position: ordering the packed value orders by rank, then leftmost position.
    private var heap: [UInt64] = []

    mutating func reset() {
        ids.removeAll(keepingCapacity: true)
        previous.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
    }

    mutating func appendSymbol(_ id: Int32) {
        let index = Int32(ids.count)
        ids.append(id)
        previous.append(index - 1)
        next.append(index + 1)
        // The last symbol has no successor; fixed up as the next one arrives.
        if index > 0 { next[Int(index) - 1] = index }
        next[Int(index)] = -1
    }

    mutating func push(rank: UInt64, position: Int) {
        var child = heap.count
        heap.append(rank << 32 | UInt64(position))
        let value = heap[child]
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[parent] > value else { break }
            heap[child] = heap[parent]
            child = parent
        }
        heap[child] = value
    }

    mutating func popMinimum() -> (rank: UInt64, position: Int)? {
        guard let last = heap.popLast() else { return nil }
        guard !heap.isEmpty else { return (last >> 32, Int(last & 0xFFFF_FFFF)) }
        let top = heap[0]
        var parent = 0
        let count = heap.count
        while true {
            var child = 2 * parent + 1
            guard child < count else { break }
            if child + 1 < count, heap[child + 1] < heap[child] { child += 1 }
            guard heap[child] < last else { break }
            heap[parent] = heap[child]
            parent = child
        }
        heap[parent] = last
        return (top >> 32, Int(top & 0xFFFF_FFFF))
    }
}
