import CondenseWire
import Testing

/// Deterministic generator so fuzz failures reproduce (SplitMix64).
private struct SeededGenerator: RandomNumberGenerator {
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

/// Feeds `stream` in the given chunk sizes (cycled) and collects the frames.
private func decodeFrames(_ stream: [UInt8], chunkSizes: [Int], maximum: Int = FrameDecoder.defaultMaximumFrameLength)
    throws(WireError) -> [[UInt8]]
{
    var decoder = FrameDecoder(maximumFrameLength: maximum)
    var frames: [[UInt8]] = []
    var offset = 0
    var chunkIndex = 0
    while offset < stream.count {
        let size = min(max(chunkSizes[chunkIndex % chunkSizes.count], 1), stream.count - offset)
        chunkIndex += 1
        decoder.append(stream[offset..<offset + size])
        offset += size
        while let frame = try decoder.nextFrame() { frames.append(frame) }
    }
    return frames
}

@Suite("FrameDecoder")
struct FrameDecoderTests {
    static let bodies: [[UInt8]] = [
        Envelope.headers(streamID: 1, method: "/a.B/C", timeoutMs: 5).serializedBytes(),
        [],
        Envelope.message(streamID: 1, payload: Array(repeating: 7, count: 300)).serializedBytes(),
        Envelope.halfClose(streamID: 1).serializedBytes(),
    ]
    static let stream = bodies.flatMap(FrameDecoder.frame)

    @Test func framesHaveBigEndianLengthPrefix() {
        #expect(FrameDecoder.frame([9, 8, 7]) == [0, 0, 0, 3, 9, 8, 7])
        #expect(FrameDecoder.frame(Array(repeating: 0, count: 0x0102)).prefix(4) == [0, 0, 1, 2])
    }

    @Test func decodesCoalescedFrames() throws {
        #expect(try decodeFrames(Self.stream, chunkSizes: [Self.stream.count]) == Self.bodies)
    }

    @Test func decodesOneByteAtATime() throws {
        #expect(try decodeFrames(Self.stream, chunkSizes: [1]) == Self.bodies)
    }

    @Test func decodesSplitInsideLengthAndBody() throws {
        #expect(try decodeFrames(Self.stream, chunkSizes: [2, 3, 5, 7, 11]) == Self.bodies)
    }

    @Test func holdsPartialFrameUntilComplete() throws {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0, 5, 1, 2])
        #expect(try decoder.nextFrame() == nil)
        #expect(decoder.bufferedByteCount == 6)
        decoder.append([3, 4, 5, 0, 0])
        #expect(try decoder.nextFrame() == [1, 2, 3, 4, 5])
        #expect(try decoder.nextFrame() == nil)
        #expect(decoder.bufferedByteCount == 2)
    }

    @Test func rejectsOversizedLengthBeforeTheBodyArrives() {
        var decoder = FrameDecoder(maximumFrameLength: 1024)
        decoder.append([0, 0, 4, 1])  // 1025, no body yet
        #expect(throws: WireError.frameTooLarge(length: 1025, maximum: 1024)) { try decoder.nextFrame() }
        var exact = FrameDecoder(maximumFrameLength: 1024)
        exact.append([0, 0, 4, 0])
        #expect(throws: Never.self) { try exact.nextFrame() }
        var huge = FrameDecoder()
        huge.append([0xff, 0xff, 0xff, 0xff])
        #expect(throws: WireError.frameTooLarge(length: 0xffff_ffff, maximum: 16 << 20)) { try huge.nextFrame() }
    }

    /// Random byte streams, random mutations of valid streams, random chunkings: the decoders
    /// must never trap, and valid frames must decode identically whatever the chunking.
    @Test func fuzzFramesAndEnvelopes() throws {
        var random = SeededGenerator(seed: 0xC0DE_15E)
        let clock = ContinuousClock()
        let stop = clock.now + .seconds(3)
        var iterations = 0
        var validEnvelopes = 0
        while clock.now < stop || iterations < 200 {
            iterations += 1
            // A stream of random valid envelopes.
            var envelopes: [Envelope] = []
            for _ in 0..<Int.random(in: 1...6, using: &random) {
                envelopes.append(randomEnvelope(using: &random))
            }
            let bodies = envelopes.map { $0.serializedBytes() }
            var stream = bodies.flatMap(FrameDecoder.frame)
            let chunkings = (0..<3).map { _ in
                (0..<4).map { _ in Int.random(in: 1...max(1, stream.count), using: &random) }
            }
            for chunking in [[1], [stream.count]] + chunkings {
                let frames = try decodeFrames(stream, chunkSizes: chunking)
                #expect(frames == bodies)
                #expect(try frames.map { try Envelope(serializedBytes: $0) } == envelopes)
            }

            // Mutations: flip, insert, delete bytes; must only ever throw or decode.
            for _ in 0..<Int.random(in: 1...8, using: &random) where !stream.isEmpty {
                let index = Int.random(in: 0..<stream.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: stream[index] = UInt8.random(in: 0...255, using: &random)
                case 1: stream.insert(UInt8.random(in: 0...255, using: &random), at: index)
                default: stream.remove(at: index)
                }
            }
            validEnvelopes += decodeAnything(stream, chunk: Int.random(in: 1...64, using: &random))

            // Pure noise, with a small maximum so random length prefixes often exceed it.
            let noise = (0..<Int.random(in: 0...256, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            validEnvelopes += decodeAnything(noise, chunk: Int.random(in: 1...16, using: &random), maximum: 200)
            if let body = noise.isEmpty ? nil : Array(noise.dropFirst()) {
                _ = try? Envelope(serializedBytes: body)
            }
        }
        #expect(iterations >= 200)
        #expect(validEnvelopes > 0)  // mutations usually spare some frames: the envelope path is exercised
    }

    /// Decodes whatever frames and envelopes `stream` yields; returns how many envelopes were valid.
    private func decodeAnything(_ stream: [UInt8], chunk: Int, maximum: Int = 1 << 16) -> Int {
        guard let frames = try? decodeFrames(stream, chunkSizes: [chunk], maximum: maximum) else { return 0 }
        return frames.count { (try? Envelope(serializedBytes: $0)) != nil }
    }

    private func randomEnvelope(using random: inout SeededGenerator) -> Envelope {
        func text(_ maxLength: Int) -> String {
            let scalars = (0..<Int.random(in: 0...maxLength, using: &random)).map { _ in
                // Printable ASCII plus some multi-byte scalars; no NUL (C strings).
                Int.random(in: 0..<4, using: &random) == 0
                    ? Character(UnicodeScalar(UInt32.random(in: 0xA0...0x2FFF, using: &random)) ?? "x")
                    : Character(UnicodeScalar(UInt8.random(in: 0x20...0x7E, using: &random)))
            }
            return String(scalars)
        }
        let kind = FrameKind.allCases.randomElement(using: &random) ?? .message
        let status =
            Bool.random(using: &random)
            ? RPCStatus(
                code: StatusCode.allCases.randomElement(using: &random) ?? .ok, message: text(20),
                retryAfterMs: UInt32.random(in: 0...1000, using: &random))
            : nil
        return Envelope(
            streamID: UInt32.random(in: 0...UInt32.max, using: &random), kind: kind, method: text(40),
            metadata: (0..<Int.random(in: 0...3, using: &random)).map { _ in MetadataEntry(key: text(10), value: text(30)) },
            timeoutMs: UInt64.random(in: 0...UInt64.max, using: &random),
            payload: (0..<Int.random(in: 0...200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) },
            status: status, windowIncrement: UInt32.random(in: 0...UInt32.max, using: &random),
            pingAck: Bool.random(using: &random))
    }
}
