import CondenseWire
import Testing

@Suite("Envelope")
struct EnvelopeTests {
    static let everyField = Envelope(
        streamID: 7, kind: .headers, method: "/condense.v1.EmbeddingService/Embed",
        metadata: [
            MetadataEntry(key: "authorization", value: "Bearer s3cret"),
            MetadataEntry(key: "x-note", value: "héllo ✓"),
        ],
        timeoutMs: 1_500, payload: [0, 1, 2, 255], status: RPCStatus(code: .unavailable, message: "busy", retryAfterMs: 250),
        windowIncrement: 32, pingAck: true)

    @Test func roundTripsEveryField() throws {
        let decoded = try Envelope(serializedBytes: Self.everyField.serializedBytes())
        #expect(decoded == Self.everyField)
        #expect(decoded.metadata.value(forKey: "x-note") == "héllo ✓")
    }

    @Test(arguments: FrameKind.allCases)
    func roundTripsEachKind(kind: FrameKind) throws {
        let envelope = Envelope(streamID: 3, kind: kind)
        #expect(try Envelope(serializedBytes: envelope.serializedBytes()) == envelope)
    }

    @Test(arguments: StatusCode.allCases)
    func roundTripsEachStatusCode(code: StatusCode) throws {
        let envelope = Envelope.trailers(streamID: 1, status: RPCStatus(code: code, message: "m"))
        let decoded = try Envelope(serializedBytes: envelope.serializedBytes())
        #expect(decoded.status?.code == code)
        #expect(decoded.status?.code.rawValue == code.rawValue)
    }

    @Test func statusCodesHaveGRPCNumbersAndNames() {
        #expect(StatusCode.allCases.count == 17)
        #expect(StatusCode.invalidArgument.rawValue == 3 && StatusCode.invalidArgument.description == "INVALID_ARGUMENT")
        #expect(StatusCode.unauthenticated.rawValue == 16 && StatusCode.unauthenticated.description == "UNAUTHENTICATED")
        #expect(StatusCode.internal.rawValue == 13 && StatusCode.internal.description == "INTERNAL")
    }

    @Test func encodesProtobufWireFormat() {
        // stream_id=1 (field 1 varint), kind=MESSAGE (field 2 varint), payload "hi" (field 6 bytes)
        let bytes = Envelope.message(streamID: 1, payload: Array("hi".utf8)).serializedBytes()
        #expect(bytes == [0x08, 0x01, 0x10, 0x02, 0x32, 0x02, 0x68, 0x69])
    }

    @Test func decodesFromNonContiguousCollections() throws {
        let bytes = Self.everyField.serializedBytes()
        #expect(try Envelope(serializedBytes: bytes.reversed().reversed()) == Self.everyField)
        #expect(try Envelope(serializedBytes: bytes[...]) == Self.everyField)
    }

    @Test func rejectsMalformedProtobuf() {
        #expect(throws: WireError.undecodable(message: "condense.v1.Envelope")) {
            try Envelope(serializedBytes: [0xff, 0xff, 0xff])
        }
        // Length-delimited method field claiming 10 bytes with only 2 present.
        #expect(throws: WireError.undecodable(message: "condense.v1.Envelope")) {
            try Envelope(serializedBytes: [0x10, 0x01, 0x1a, 0x0a, 0x41, 0x42])
        }
    }

    @Test func rejectsMissingAndUnknownFrameKinds() {
        #expect(throws: WireError.invalidField(message: "condense.v1.Envelope", field: "kind", reason: "unknown frame kind 0")) {
            try Envelope(serializedBytes: [])
        }
        #expect(throws: WireError.invalidField(message: "condense.v1.Envelope", field: "kind", reason: "unknown frame kind 99")) {
            try Envelope(serializedBytes: [0x08, 0x01, 0x10, 0x63])
        }
    }

    @Test func rejectsUnknownStatusCode() {
        // kind=TRAILERS, status { code: 42 }
        #expect(throws: WireError.self) {
            try Envelope(serializedBytes: [0x10, 0x03, 0x3a, 0x02, 0x08, 0x2a])
        }
    }

    @Test func rejectsInvalidUTF8InStrings() {
        // method = FF FE
        #expect(throws: WireError.self) {
            try Envelope(serializedBytes: [0x10, 0x01, 0x1a, 0x02, 0xff, 0xfe])
        }
        // metadata { key: "k", value: C3 28 (truncated two-byte sequence) }
        #expect(throws: WireError.self) {
            try Envelope(serializedBytes: [0x10, 0x01, 0x22, 0x07, 0x0a, 0x01, 0x6b, 0x12, 0x02, 0xc3, 0x28])
        }
        // status { code: 3, message: ED A0 80 (UTF-16 surrogate) }
        #expect(throws: WireError.self) {
            try Envelope(serializedBytes: [0x10, 0x03, 0x3a, 0x07, 0x08, 0x03, 0x12, 0x03, 0xed, 0xa0, 0x80])
        }
    }

    @Test func rpcErrorCarriesItsStatus() {
        let error = RPCError(code: .resourceExhausted, message: "queue full", retryAfterMs: 100)
        #expect(error.status == RPCStatus(code: .resourceExhausted, message: "queue full", retryAfterMs: 100))
        #expect(error.description == "RESOURCE_EXHAUSTED: queue full (retry after 100 ms)")
        #expect(RPCStatus(code: .ok, retryAfterMs: 0).retryAfterMs == nil)
    }

    /// The byte-level example in Protos/README.md, section 10.
    @Test func readmeWorkedExampleBytes() {
        func hex(_ envelope: Envelope) -> String {
            FrameDecoder.frame(envelope.serializedBytes()).map { byte in
                let digits = Array("0123456789abcdef")
                return String([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
            }.joined(separator: " ")
        }
        let headers = Envelope.headers(
            streamID: 1, method: "/condense.v1.EmbeddingService/Embed",
            metadata: [MetadataEntry(key: "authorization", value: "Bearer s3cret")], timeoutMs: 5000)
        #expect(
            hex(headers)
                == "00 00 00 4c 08 01 10 01 1a 23 2f 63 6f 6e 64 65 6e 73 65 2e 76 31 2e 45 6d 62 65 64 64 69 6e 67 "
                + "53 65 72 76 69 63 65 2f 45 6d 62 65 64 22 1e 0a 0d 61 75 74 68 6f 72 69 7a 61 74 69 6f 6e 12 0d "
                + "42 65 61 72 65 72 20 73 33 63 72 65 74 28 88 27")
        #expect(hex(.message(streamID: 1, payload: [0x0a, 0x05] + Array("hello".utf8)))
            == "00 00 00 0d 08 01 10 02 32 07 0a 05 68 65 6c 6c 6f")
        #expect(hex(.halfClose(streamID: 1)) == "00 00 00 04 08 01 10 03")
        #expect(hex(.trailers(streamID: 1, status: .ok)) == "00 00 00 06 08 01 10 03 3a 00")
        #expect(
            hex(.trailers(streamID: 1, status: RPCStatus(code: .resourceExhausted, message: "busy", retryAfterMs: 200)))
                == "00 00 00 11 08 01 10 03 3a 0b 08 08 12 04 62 75 73 79 18 c8 01")
        #expect(hex(.windowUpdate(streamID: 1, increment: 32)) == "00 00 00 06 08 01 10 07 40 20")
        #expect(hex(.ping(payload: [1, 2, 3, 4, 5, 6, 7, 8])) == "00 00 00 0c 10 05 32 08 01 02 03 04 05 06 07 08")
        #expect(
            hex(.ping(payload: [1, 2, 3, 4, 5, 6, 7, 8], ack: true))
                == "00 00 00 0e 10 05 32 08 01 02 03 04 05 06 07 08 48 01")
        #expect(hex(.cancel(streamID: 3)) == "00 00 00 08 08 03 10 04 3a 02 08 01")
        #expect(
            hex(.goAway(lastStreamID: 5, reason: "server shutting down"))
                == "00 00 00 1e 08 05 10 06 3a 18 08 0e 12 14 73 65 72 76 65 72 20 73 68 75 74 74 69 6e 67 20 64 6f 77 6e")
    }
}
