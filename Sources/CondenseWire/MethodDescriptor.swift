/// A method of a condense.v1 service: its gRPC-style path and who streams.
public struct MethodDescriptor: Sendable, Hashable, CustomStringConvertible {
    public enum CallKind: Sendable, Hashable {
        /// One request, one response.
        case unary
        /// Request messages until half-close, then one response.
        case clientStreaming
        /// One request, then response messages until trailers.
        case serverStreaming
        /// Both sides stream independently.
        case bidirectionalStreaming
    }

    /// "/condense.v1.EmbeddingService/Embed"
    public let path: String
    public let kind: CallKind

    public init(path: String, kind: CallKind) {
        self.path = path
        self.kind = kind
    }

    public var description: String { path }
}
