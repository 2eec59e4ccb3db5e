/// A bounds-checked little-endian cursor over a mapped file. Every read checks the remaining length
/// first, so a truncated or corrupted file surfaces as `ModelLoadError.truncated`, never as an
/// out-of-bounds read.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    private(set) var offset: Int

    init(bytes: UnsafeRawBufferPointer, path: String, offset: Int = 0) {
        self.bytes = bytes
        self.path = path
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    /// Fails unless `count` more bytes are available; `what` names the structure for the error.
    func require(_ count: Int, _ what: @autoclosure () -> String) throws(ModelLoadError) {
        guard count >= 0, count <= remaining else {
            throw .truncated(path: path, detail: "\(what()) needs \(count) bytes at offset \(offset), \(max(remaining, 0)) left")
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws(ModelLoadError) -> T {
        try require(MemoryLayout<T>.size, what())
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: value)
    }

    mutating func readFloat(_ what: @autoclosure () -> String) throws(ModelLoadError) -> Float {
        Float(bitPattern: try read(UInt32.self, what()))
    }

    mutating func readDouble(_ what: @autoclosure () -> String) throws(ModelLoadError) -> Double {
        Double(bitPattern: try read(UInt64.self, what()))
    }

    /// Reads a count stored as UInt64 and checks it fits in `Int`.
    mutating func readCount(_ what: @autoclosure () -> String) throws(ModelLoadError) -> Int {
        let raw = try read(UInt64.self, what())
        guard raw <= UInt64(Int.max) else {
            throw .corrupted(path: path, detail: "\(what()) is \(raw), larger than addressable")
        }
        return Int(raw)
    }

    mutating func skip(_ count: Int, _ what: @autoclosure () -> String) throws(ModelLoadError) {
        try require(count, what())
        offset += count
    }

    /// Reads `count` bytes as UTF-8 (invalid sequences become U+FFFD rather than failing).
    mutating func readString(byteCount count: Int, _ what: @autoclosure () -> String) throws(ModelLoadError) -> String {
        try require(count, what())
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        return String(decoding: slice, as: UTF8.self)
    }

    mutating func seek(to newOffset: Int, _ what: @autoclosure () -> String) throws(ModelLoadError) {
        guard newOffset >= 0, newOffset <= bytes.count else {
            throw .truncated(path: path, detail: "\(what()) at offset \(newOffset) is beyond the file end (\(bytes.count) bytes)")
        }
        offset = newOffset
    }
}
