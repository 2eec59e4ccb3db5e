import CondenseWire
import Testing

/// Malformed bytes must throw a WireError naming the message (and field), never trap.
@Suite("Malformed service messages")
struct MalformedInputTests {
    @Test("truncated messages are rejected")
    func truncated() {
        let bytes = ItemError(code: .tooLong, message: "abc").serializedBytes()
        #expect(bytes == [0x08, 0x03, 0x12, 0x03, 0x61, 0x62, 0x63])
        #expect(throws: WireError.undecodable(message: "condense.v1.ItemError")) {
            try ItemError(serializedBytes: bytes.dropLast())
        }
        // A varint whose continuation bit promises another byte.
        #expect(throws: WireError.undecodable(message: "condense.v1.ItemError")) {
            try ItemError(serializedBytes: [0x08, 0x80])
        }
        // A length prefix far beyond the buffer.
        #expect(throws: WireError.undecodable(message: "condense.v1.EmbedRequest")) {
            try EmbedRequest(serializedBytes: [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x61])
        }
    }

    @Test("every prefix of every sample decodes or throws", arguments: wireSamples())
    func everyPrefix(sample: WireSample) {
        var rejected = 0
        for length in 0..<sample.encoded.count {
            do {
                _ = try sample.decodesToSample(Array(sample.encoded.prefix(length)))
            } catch {
                rejected += 1
            }
        }
        // Cutting into the first length-delimited field always breaks the message.
        #expect(rejected > 0 || sample.encoded.count < 3, "\(sample)")
    }

    @Test("fields sent with the wrong wire type are rejected")
    func wrongWireType() {
        // HealthResponse.status (varint) sent length-delimited.
        #expect(throws: WireError.undecodable(message: "condense.v1.HealthResponse")) {
            try HealthResponse(serializedBytes: [0x0A, 0x01, 0x00])
        }
        // ItemError.message (string) sent as a varint.
        #expect(throws: WireError.undecodable(message: "condense.v1.ItemError")) {
            try ItemError(serializedBytes: [0x10, 0x05])
        }
        // EmbedResponse.results (message) sent as a fixed32.
        #expect(throws: WireError.undecodable(message: "condense.v1.EmbedResponse")) {
            try EmbedResponse(serializedBytes: [0x0D, 0x00, 0x00, 0x00, 0x00])
        }
    }

    @Test("invalid UTF-8 in a string field names the message and field")
    func invalidUTF8() {
        let invalid = WireError.invalidField(message: "condense.v1.ItemError", field: "message", reason: "invalid UTF-8")
        #expect(throws: invalid) { try ItemError(serializedBytes: [0x12, 0x01, 0xFF]) }
        // Overlong encoding of "/" and a UTF-16 surrogate are not UTF-8 either.
        #expect(throws: invalid) { try ItemError(serializedBytes: [0x12, 0x02, 0xC0, 0xAF]) }
        #expect(throws: invalid) { try ItemError(serializedBytes: [0x12, 0x03, 0xED, 0xA0, 0x80]) }
        // Second element of a repeated string (ModelInfo.adapters_loaded = field 12).
        #expect(throws: WireError.invalidField(message: "condense.v1.ModelInfo", field: "adapters_loaded[1]", reason: "invalid UTF-8")) {
            try ModelInfo(serializedBytes: [0x62, 0x01, 0x61, 0x62, 0x01, 0xFE])
        }
        // Inside a nested message: EmbedResponse.results[0].error.message.
        let nested: [UInt8] = [0x0A, 0x05, 0x1A, 0x03, 0x12, 0x01, 0xFF]
        #expect(throws: invalid) { try EmbedResponse(serializedBytes: nested) }
        // Valid multi-byte UTF-8 passes.
        #expect((try? ItemError(serializedBytes: [0x12, 0x02, 0xC3, 0xA9]))?.message == "é")
    }

    @Test("unknown enum values are rejected")
    func unknownEnums() {
        #expect(throws: WireError.invalidField(message: "condense.v1.ItemError", field: "code", reason: "unknown enum value 99")) {
            try ItemError(serializedBytes: [0x08, 0x63])
        }
        // -1 is a ten-byte varint.
        let minusOne: [UInt8] = [0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01]
        #expect(throws: WireError.invalidField(message: "condense.v1.ItemError", field: "code", reason: "unknown enum value -1")) {
            try ItemError(serializedBytes: minusOne)
        }
        // Packed repeated enum ListJobsRequest.states = [VALIDATING, 9].
        #expect(throws: WireError.invalidField(message: "condense.v1.ListJobsRequest", field: "states[1]", reason: "unknown enum value 9")) {
            try ListJobsRequest(serializedBytes: [0x0A, 0x02, 0x01, 0x09])
        }
        #expect((try? ListJobsRequest(serializedBytes: [0x0A, 0x02, 0x01, 0x06]))?.states == [.validating, .cancelled])
    }

    @Test("random and mutated bytes decode or throw, never trap", arguments: wireSamples().filter { $0.variant == 0 })
    func randomBytes(sample: WireSample) {
        var random = SplitMix64(seed: UInt64(sample.messageName.utf8.count) &* 0x9E37_79B9)
        var outcomes = (decoded: 0, rejected: 0)
        func attempt(_ bytes: [UInt8]) {
            do {
                _ = try sample.decodesToSample(bytes)
                outcomes.decoded += 1
            } catch {
                outcomes.rejected += 1
            }
        }
        for _ in 0..<200 {
            let count = Int(random.next() % 48)
            attempt((0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) })
        }
        if !sample.encoded.isEmpty {
            for _ in 0..<200 {
                var mutated = sample.encoded
                for _ in 0..<1 + Int(random.next() % 3) {
                    mutated[Int(random.next() % UInt64(mutated.count))] = UInt8(truncatingIfNeeded: random.next())
                }
                attempt(mutated)
            }
        }
        #expect(outcomes.decoded + outcomes.rejected == (sample.encoded.isEmpty ? 200 : 400))
        #expect(outcomes.rejected > 0)
    }

    @Test("errors describe the message and field")
    func errorDescriptions() {
        #expect(WireError.undecodable(message: "condense.v1.EmbedRequest").description
            == "cannot decode condense.v1.EmbedRequest: malformed protobuf")
        #expect(WireError.invalidField(message: "condense.v1.ItemError", field: "code", reason: "unknown enum value 99").description
            == "condense.v1.ItemError.code: unknown enum value 99")
    }
}

/// Deterministic pseudo-random numbers (SplitMix64), so failures reproduce.
private struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
