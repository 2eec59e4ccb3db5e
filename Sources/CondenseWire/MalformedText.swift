/// An input text whose bytes are not valid UTF-8. Embedding requests keep such items instead of
/// rejecting the whole request, so the server can fail just that item
/// (`ItemErrorCode.invalidUTF8`) and a test client can send one.
public struct MalformedText: Sendable, Hashable {
    /// Position in the request's `texts`.
    public var index: Int
    /// The text's bytes as received (up to the first NUL byte).
    public var bytes: [UInt8]

    public init(index: Int, bytes: [UInt8]) {
        self.index = index
        self.bytes = bytes
    }
}
