import CondenseWire
import NIOCore

/// Turns received TCP bytes into envelopes.
struct EnvelopeReader {
    private var decoder: FrameDecoder

    init(maximumFrameLength: Int) {
        decoder = FrameDecoder(maximumFrameLength: maximumFrameLength)
    }

    /// True while part of a frame is buffered.
    var hasPartialFrame: Bool { decoder.bufferedByteCount > 0 }

    mutating func append(_ bytes: ByteBuffer) {
        bytes.withUnsafeReadableBytes { decoder.append($0) }
    }

    /// Throws `WireError.frameTooLarge` for an oversized length prefix, other `WireError`s
    /// for a frame that is not a valid envelope.
    mutating func next() throws(WireError) -> Envelope? {
        guard let body = try decoder.nextFrame() else { return nil }
        return try Envelope(serializedBytes: body)
    }
}

extension ChannelHandlerContext {
    /// Writes one frame (length prefix + serialized envelope) without flushing.
    func writeFrame(_ serializedEnvelope: [UInt8]) {
        var buffer = channel.allocator.buffer(capacity: FrameDecoder.lengthFieldSize + serializedEnvelope.count)
        buffer.writeInteger(UInt32(truncatingIfNeeded: serializedEnvelope.count))
        buffer.writeBytes(serializedEnvelope)
        write(NIOAny(buffer), promise: nil)
    }

    func writeFrame(_ envelope: Envelope) {
        writeFrame(envelope.serializedBytes())
    }
}

extension Envelope {
    /// Serializes a MESSAGE frame, refusing one larger than the peer accepts.
    static func messageFrame(streamID: UInt32, payload: [UInt8], maximumFrameLength: Int) throws(RPCError) -> [UInt8] {
        let bytes = Envelope.message(streamID: streamID, payload: payload).serializedBytes()
        guard bytes.count <= maximumFrameLength else {
            throw RPCError(
                code: .resourceExhausted,
                message: "message of \(payload.count) bytes exceeds the maximum frame size of \(maximumFrameLength) bytes")
        }
        return bytes
    }
}
