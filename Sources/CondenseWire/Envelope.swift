import CCondenseProtos

/// What a frame means for its stream (`condense.v1.FrameKind`). `FRAME_KIND_UNSPECIFIED` is not a
/// valid frame: decoding rejects it like any other unknown kind.
public enum FrameKind: UInt32, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case headers = 1
    case message = 2
    case trailers = 3
    case cancel = 4
    case ping = 5
    case goAway = 6
    case windowUpdate = 7

    public var description: String {
        switch self {
        case .headers: "HEADERS"
        case .message: "MESSAGE"
        case .trailers: "TRAILERS"
        case .cancel: "CANCEL"
        case .ping: "PING"
        case .goAway: "GOAWAY"
        case .windowUpdate: "WINDOW_UPDATE"
        }
    }
}

/// One call metadata pair (`condense.v1.MetadataEntry`); keys are lower-case ASCII by convention.
public struct MetadataEntry: Sendable, Hashable {
    public var key: String
    public var value: String

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

extension Array where Element == MetadataEntry {
    /// The value of the first entry named `key`, if any.
    public func value(forKey key: String) -> String? {
        first { $0.key == key }?.value
    }
}

/// One transport frame (`condense.v1.Envelope`). Strings must not contain NUL characters:
/// protobuf-c stores them as C strings.
public struct Envelope: WireMessage, Hashable {
    public static let protobufName = "condense.v1.Envelope"

    public var streamID: UInt32
    public var kind: FrameKind
    public var method: String
    public var metadata: [MetadataEntry]
    public var timeoutMs: UInt64
    public var payload: [UInt8]
    public var status: RPCStatus?
    public var windowIncrement: UInt32
    public var pingAck: Bool

    public init(
        streamID: UInt32, kind: FrameKind, method: String = "", metadata: [MetadataEntry] = [],
        timeoutMs: UInt64 = 0, payload: [UInt8] = [], status: RPCStatus? = nil,
        windowIncrement: UInt32 = 0, pingAck: Bool = false
    ) {
        self.streamID = streamID
        self.kind = kind
        self.method = method
        self.metadata = metadata
        self.timeoutMs = timeoutMs
        self.payload = payload
        self.status = status
        self.windowIncrement = windowIncrement
        self.pingAck = pingAck
    }

    // MARK: Frame constructors

    public static func headers(
        streamID: UInt32, method: String, metadata: [MetadataEntry] = [], timeoutMs: UInt64 = 0
    ) -> Envelope {
        Envelope(streamID: streamID, kind: .headers, method: method, metadata: metadata, timeoutMs: timeoutMs)
    }

    public static func message(streamID: UInt32, payload: [UInt8]) -> Envelope {
        Envelope(streamID: streamID, kind: .message, payload: payload)
    }

    /// Server: ends the call with `status`.
    public static func trailers(streamID: UInt32, status: RPCStatus) -> Envelope {
        Envelope(streamID: streamID, kind: .trailers, status: status)
    }

    /// Client: no more request messages on this stream.
    public static func halfClose(streamID: UInt32) -> Envelope {
        Envelope(streamID: streamID, kind: .trailers)
    }

    public static func cancel(streamID: UInt32, reason: String = "") -> Envelope {
        Envelope(streamID: streamID, kind: .cancel, status: RPCStatus(code: .cancelled, message: reason))
    }

    public static func ping(payload: [UInt8], ack: Bool = false) -> Envelope {
        Envelope(streamID: 0, kind: .ping, payload: payload, pingAck: ack)
    }

    /// `lastStreamID`: the highest stream id the sender still serves.
    public static func goAway(lastStreamID: UInt32, reason: String = "") -> Envelope {
        Envelope(streamID: lastStreamID, kind: .goAway, status: RPCStatus(code: .unavailable, message: reason))
    }

    public static func windowUpdate(streamID: UInt32, increment: UInt32) -> Envelope {
        Envelope(streamID: streamID, kind: .windowUpdate, windowIncrement: increment)
    }

    // MARK: Encoding

    public func serializedBytes() -> [UInt8] {
        withCMessage { message in
            let size = condense__v1__envelope__get_packed_size(message)
            return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                count = condense__v1__envelope__pack(message, buffer.baseAddress)
            }
        }
    }

    /// Points a protobuf-c struct at copies of this value's strings and at its payload; the
    /// pointers live only for the duration of `body`.
    private func withCMessage<Result>(_ body: (UnsafePointer<Condense__V1__Envelope>) -> Result) -> Result {
        // All strings, NUL-terminated back to back in one allocation.
        var arenaSize = method.utf8.count + 1 + (status?.message.utf8.count ?? 0) + 1
        for entry in metadata { arenaSize += entry.key.utf8.count + entry.value.utf8.count + 2 }
        let arena = UnsafeMutablePointer<CChar>.allocate(capacity: arenaSize)
        defer { arena.deallocate() }
        var arenaCursor = 0
        func placeCString(_ text: String) -> UnsafeMutablePointer<CChar> {
            let start = arena + arenaCursor
            for byte in text.utf8 {
                arena[arenaCursor] = CChar(bitPattern: byte)
                arenaCursor += 1
            }
            arena[arenaCursor] = 0
            arenaCursor += 1
            return start
        }

        let entryCapacity = Swift.max(metadata.count, 1)
        let entries = UnsafeMutablePointer<Condense__V1__MetadataEntry>.allocate(capacity: entryCapacity)
        let entryPointers = UnsafeMutablePointer<UnsafeMutablePointer<Condense__V1__MetadataEntry>?>
            .allocate(capacity: entryCapacity)
        let cStatus = UnsafeMutablePointer<Condense__V1__Status>.allocate(capacity: 1)
        defer {
            entries.deallocate()
            entryPointers.deallocate()
            cStatus.deallocate()
        }

        var message = Condense__V1__Envelope()
        condense__v1__envelope__init(&message)
        message.stream_id = streamID
        message.kind = Condense__V1__FrameKind(rawValue: numericCast(kind.rawValue))
        message.method = placeCString(method)
        for (index, entry) in metadata.enumerated() {
            (entries + index).initialize(to: Condense__V1__MetadataEntry())
            condense__v1__metadata_entry__init(entries + index)
            entries[index].key = placeCString(entry.key)
            entries[index].value = placeCString(entry.value)
            entryPointers[index] = entries + index
        }
        message.n_metadata = metadata.count
        message.metadata = metadata.isEmpty ? nil : entryPointers
        message.timeout_ms = timeoutMs
        if let status {
            cStatus.initialize(to: Condense__V1__Status())
            condense__v1__status__init(cStatus)
            cStatus.pointee.code = Condense__V1__StatusCode(rawValue: numericCast(status.code.rawValue))
            cStatus.pointee.message = placeCString(status.message)
            cStatus.pointee.retry_after_ms = status.retryAfterMs ?? 0
            message.status = cStatus
        }
        message.window_increment = windowIncrement
        message.ping_ack = pingAck ? 1 : 0
        return payload.withUnsafeBufferPointer { payloadBytes in
            message.payload = ProtobufCBinaryData(
                len: payloadBytes.count, data: UnsafeMutablePointer(mutating: payloadBytes.baseAddress))
            return body(&message)
        }
    }

    // MARK: Decoding

    public init(serializedBytes bytes: some Collection<UInt8>) throws(WireError) {
        let decoded =
            bytes.withContiguousStorageIfAvailable(Self.decode)
            ?? Array(bytes).withUnsafeBufferPointer(Self.decode)
        self = try decoded.get()
    }

    /// Unpack -> copy out -> free: no protobuf-c memory outlives this call.
    private static func decode(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<Envelope, WireError> {
        guard let message = condense__v1__envelope__unpack(nil, bytes.count, bytes.baseAddress) else {
            return .failure(.undecodable(message: protobufName))
        }
        defer { condense__v1__envelope__free_unpacked(message, nil) }
        return Result { () throws(WireError) in try copyOut(message.pointee) }
    }

    private static func copyOut(_ message: Condense__V1__Envelope) throws(WireError) -> Envelope {
        guard let kind = FrameKind(rawValue: numericCast(message.kind.rawValue)) else {
            throw .invalidField(
                message: protobufName, field: "kind", reason: "unknown frame kind \(message.kind.rawValue)")
        }
        var metadata: [MetadataEntry] = []
        metadata.reserveCapacity(message.n_metadata)
        for index in 0..<message.n_metadata {
            guard let entry = message.metadata?[index] else {
                throw .undecodable(message: protobufName)
            }
            metadata.append(
                MetadataEntry(
                    key: try string(entry.pointee.key, field: "metadata.key"),
                    value: try string(entry.pointee.value, field: "metadata.value")))
        }
        var status: RPCStatus?
        if let cStatus = message.status?.pointee {
            guard let code = StatusCode(rawValue: numericCast(cStatus.code.rawValue)) else {
                throw .invalidField(
                    message: protobufName, field: "status.code", reason: "unknown status code \(cStatus.code.rawValue)")
            }
            status = RPCStatus(
                code: code, message: try string(cStatus.message, field: "status.message"),
                retryAfterMs: cStatus.retry_after_ms)
        }
        let payload: [UInt8] =
            if let data = message.payload.data, message.payload.len > 0 {
                Array(UnsafeBufferPointer(start: data, count: message.payload.len))
            } else {
                []
            }
        return Envelope(
            streamID: message.stream_id, kind: kind, method: try string(message.method, field: "method"),
            metadata: metadata, timeoutMs: message.timeout_ms, payload: payload, status: status,
            windowIncrement: message.window_increment, pingAck: message.ping_ack != 0)
    }

    private static func string(_ pointer: UnsafeMutablePointer<CChar>?, field: String) throws(WireError) -> String {
        guard let pointer else { return "" }
        guard let text = String(validatingCString: pointer) else {
            throw .invalidField(message: protobufName, field: field, reason: "invalid UTF-8")
        }
        return text
    }
}
