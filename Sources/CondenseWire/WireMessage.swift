/// A protobuf message exposed as a Swift value type. Conformers convert to and from the
/// protobuf-c structs internally; no C pointer escapes this module.
public protocol WireMessage: Sendable {
    /// Decodes a serialized message. Malformed bytes throw; they never trap.
    init(serializedBytes: some Collection<UInt8>) throws(WireError)
    /// Encodes the message in protobuf wire format.
    func serializedBytes() -> [UInt8]
}

/// Errors of the message layer (encoding, decoding, framing).
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// protobuf-c rejected the bytes as the named message type.
    case undecodable(message: String)
    /// A decoded field holds a value the protocol does not allow (unknown enum, bad UTF-8, ...).
    case invalidField(message: String, field: String, reason: String)
    /// A frame's length prefix exceeds the configured maximum.
    case frameTooLarge(length: Int, maximum: Int)

    public var description: String {
        switch self {
        case .undecodable(let message): "cannot decode \(message): malformed protobuf"
        case .invalidField(let message, let field, let reason): "\(message).\(field): \(reason)"
        case .frameTooLarge(let length, let maximum): "frame of \(length) bytes exceeds the maximum of \(maximum) bytes"
        }
    }
}
