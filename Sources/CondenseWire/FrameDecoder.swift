/// Splits a byte stream into frames: a 4-byte big-endian length N, then N bytes of body.
///
/// Works for any chunking of the stream (single bytes, several frames per chunk). The length
/// field is checked against `maximumFrameLength` as soon as its 4 bytes are available, before
/// any of the body is waited for, so a peer cannot make the decoder hold more than one maximal
/// frame plus the chunk being fed.
public struct FrameDecoder: Sendable {
    public static let defaultMaximumFrameLength = 16 << 20
    public static let lengthFieldSize = 4

    public let maximumFrameLength: Int
    /// Received bytes; `buffer[readIndex...]` are not yet returned as frames.
    private var buffer: [UInt8] = []
    private var readIndex = 0

    public init(maximumFrameLength: Int = FrameDecoder.defaultMaximumFrameLength) {
        self.maximumFrameLength = maximumFrameLength
    }

    /// Bytes received but not yet returned as frames (a partial frame, or frames not yet taken).
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Adds bytes read from the stream.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        // Drop consumed bytes once they dominate the buffer, keeping compaction amortised O(1).
        if readIndex > 0 && readIndex >= buffer.count - readIndex {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame body, `nil` until one is fully buffered.
    /// Throws `WireError.frameTooLarge` as soon as a length prefix above the maximum is seen.
    public mutating func nextFrame() throws(WireError) -> [UInt8]? {
        guard let length = try pendingFrameLength() else { return nil }
        let bodyStart = readIndex + Self.lengthFieldSize
        guard buffer.count - bodyStart >= length else { return nil }
        let body = Array(buffer[bodyStart..<bodyStart + length])
        readIndex = bodyStart + length
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 16)
            readIndex = 0
        }
        return body
    }

    /// The length prefix of the next frame once its 4 bytes have arrived.
    public func pendingFrameLength() throws(WireError) -> Int? {
        guard buffer.count - readIndex >= Self.lengthFieldSize else { return nil }
        var length = 0
        for offset in 0..<Self.lengthFieldSize {
            length = length << 8 | Int(buffer[readIndex + offset])
        }
        guard length <= maximumFrameLength else {
            throw .frameTooLarge(length: length, maximum: maximumFrameLength)
        }
        return length
    }

    /// The frame for `body`: its 4-byte big-endian length, then the body.
    public static func frame(_ body: [UInt8]) -> [UInt8] {
        var framed: [UInt8] = []
        framed.reserveCapacity(lengthFieldSize + body.count)
        let length = UInt32(truncatingIfNeeded: body.count)
        framed.append(UInt8(truncatingIfNeeded: length >> 24))
        framed.append(UInt8(truncatingIfNeeded: length >> 16))
        framed.append(UInt8(truncatingIfNeeded: length >> 8))
        framed.append(UInt8(truncatingIfNeeded: length))
        framed.append(contentsOf: body)
        return framed
    }
}
