/// Merge ranks keyed by the pair of token ids: open addressing over packed 64-bit keys, so the BPE
/// loop never hashes strings or touches a Dictionary.
struct MergeTable: Sendable {
    private static let emptyKey = UInt64.max
    /// Slot i holds its key at 2i and `rank << 32 | merged id` at 2i + 1: one cache line per probe.
    private var slots: [UInt64]
    private let shift: UInt64
    private let mask: Int

    init(expectedCount: Int) {
        var bits = 4
        while (1 << bits) < expectedCount * 2 { bits += 1 }
        slots = [UInt64](repeating: Self.emptyKey, count: 2 << bits)
        shift = UInt64(64 - bits)
        mask = (1 << bits) - 1
    }

    @inline(__always)
    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private func slot(for key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// A later rule for the same pair replaces the earlier one (as HF's merge map does).
    mutating func insert(left: Int32, right: Int32, rank: Int32, merged: Int32) {
        let key = Self.key(left, right)
        var index = slot(for: key)
        while slots[2 * index] != Self.emptyKey, slots[2 * index] != key { index = (index + 1) & mask }
        slots[2 * index] = key
        slots[2 * index + 1] = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
    }

    /// `rank << 32 | merged id` for the pair, or nil when the pair never merges.
    @inline(__always)
    func lookup(left: Int32, right: Int32) -> UInt64? {
        let key = Self.key(left, right)
        var index = slot(for: key)
        return slots.withUnsafeBufferPointer { slots in
            while true {
                let found = slots[2 * index]
                if found == key { return slots[2 * index + 1] }
                if found == Self.emptyKey { return nil }
                index = (index + 1) & mask
            }
        }
    }
}

/// Token ids keyed by raw byte strings (open addressing, FNV-1a): the whole-word vocabulary lookup
/// that `ignore_merges` (Llama 3) needs.
struct ByteStringTable: Sendable {
    private var storage: [UInt8] = []
    private var offsets: [Int] = [0]
    private var ids: [Int32] = []
    /// Index into `ids` per slot, -1 when empty.
    private var slots: [Int32]
    private let mask: Int

    init(expectedCount: Int) {
        var size = 16
        while size < expectedCount * 2 { size <<= 1 }
        slots = [Int32](repeating: -1, count: size)
        mask = size - 1
    }

    @inline(__always)
    private static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return Int(truncatingIfNeeded: hash ^ (hash >> 29))
    }

    private func entryEquals(_ entry: Int, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let start = offsets[entry]
        guard offsets[entry + 1] - start == bytes.count else { return false }
        for index in 0..<bytes.count where storage[start + index] != bytes[index] { return false }
        return true
    }

    /// A later id for the same bytes replaces the earlier one (as llama.cpp's token_to_id does).
    mutating func insert(_ bytes: [UInt8], id: Int32) {
        bytes.withUnsafeBufferPointer { buffer in
            var slot = Self.hash(buffer) & mask
            while slots[slot] >= 0 {
                let entry = Int(slots[slot])
                if entryEquals(entry, buffer) {
                    ids[entry] = id
                    return
                }
                slot = (slot + 1) & mask
            }
            slots[slot] = Int32(ids.count)
            ids.append(id)
            storage.append(contentsOf: buffer)
            offsets.append(storage.count)
        }
    }

    func lookup(_ bytes: UnsafeBufferPointer<UInt8>) -> Int32? {
        var slot = Self.hash(bytes) & mask
        while slots[slot] >= 0 {
            let entry = Int(slots[slot])
            if entryEquals(entry, bytes) { return ids[entry] }
            slot = (slot + 1) & mask
        }
        return nil
    }
}

/// Finds special (control and user-defined) tokens verbatim in text, leftmost-longest first.
struct SpecialTokenMatcher: Sendable {
    /// Candidates grouped by first byte: ids of the group are `candidates[groupStart[b] ..< groupStart[b + 1]]`,
    /// longest first.
    private let groupStart: [Int]
    private let candidates: [Int32]
    private let candidateBytes: [[UInt8]]

    init(tokens: [(id: Int32, bytes: [UInt8])]) {
        let sorted = tokens.filter { !$0.bytes.isEmpty }.sorted {
            ($0.bytes[0], $1.bytes.count, $0.id) < ($1.bytes[0], $0.bytes.count, $1.id)
        }
        var groupStart = [Int](repeating: 0, count: 257)
        for token in sorted { groupStart[Int(token.bytes[0]) + 1] += 1 }
        for byte in 0..<256 { groupStart[byte + 1] += groupStart[byte] }
        self.groupStart = groupStart
        candidates = sorted.map(\.id)
        candidateBytes = sorted.map(\.bytes)
    }

    var isEmpty: Bool { candidates.isEmpty }

    /// The special token starting at `position`, if any, and its length in bytes.
    @inline(__always)
    func match(_ text: UnsafeBufferPointer<UInt8>, at position: Int) -> (id: Int32, length: Int)? {
        let first = Int(text[position])
        var candidate = groupStart[first]
        let end = groupStart[first + 1]
        while candidate < end {
            let bytes = candidateBytes[candidate]
            if position + bytes.count <= text.count {
                var index = 1
                while index < bytes.count, text[position + index] == bytes[index] { index += 1 }
                if index == bytes.count { return (candidates[candidate], bytes.count) }
            }
            candidate += 1
        }
        return nil
    }
}
