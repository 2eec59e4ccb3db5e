// Exercises every CondenseWire service-message wrapper, on valid and malformed input, so that
// scripts/valgrind-wire.sh can check the C bridging for leaks. Plain single-threaded code: the
// Swift Testing runner (libdispatch) crashes valgrind 3.19, so the tests themselves cannot run
// under it. WireSamples.swift (generated, shared with the tests) supplies the messages.
import CondenseWire
import Glibc

/// Drives one sample through encode/decode paths; counts mismatches instead of trapping.
struct WireSample: Sendable {
    let exercise: @Sendable (inout LeakCheckReport) -> Void

    init<Message: WireMessage & Equatable>(_ messageName: String, variant: Int, _ sample: Message) {
        exercise = { report in
            let encoded = sample.serializedBytes()
            report.check(messageName, (try? Message(serializedBytes: encoded)) == sample)
            // Every prefix: error paths free partially decoded messages.
            for length in 0..<encoded.count {
                report.count(try? Message(serializedBytes: encoded.prefix(length)))
            }
            // Flip each byte: corrupt lengths, tags, enum values and UTF-8 sequences.
            for index in encoded.indices {
                var mutated = encoded
                mutated[index] ^= 0xA5
                report.count(try? Message(serializedBytes: mutated))
            }
        }
    }
}

struct LeakCheckReport {
    var mismatches: [String] = []
    var decoded = 0
    var rejected = 0

    mutating func check(_ name: String, _ passed: Bool) {
        if !passed { mismatches.append(name) }
    }

    mutating func count(_ result: (some WireMessage)?) {
        if result == nil { rejected += 1 } else { decoded += 1 }
    }
}

/// Everything is created and released inside this function, so whatever valgrind finds
/// unreachable at exit was leaked.
func exerciseAll() -> (samples: Int, report: LeakCheckReport) {
    var report = LeakCheckReport()
    let samples = wireSamples()
    for sample in samples {
        sample.exercise(&report)
    }
    // Texts with invalid UTF-8 are kept per item (and their bytes copied out).
    let request = EmbedRequest(texts: ["a", ""], malformedTexts: [MalformedText(index: 1, bytes: [0xFF, 0x41])])
    report.check("EmbedRequest.malformedTexts", (try? EmbedRequest(serializedBytes: request.serializedBytes())) == request)
    return (samples.count, report)
}

let (sampleCount, report) = exerciseAll()
print("\(sampleCount) samples: \(report.decoded) mutated inputs decoded, \(report.rejected) rejected, \(report.mismatches.count) round-trip mismatches \(report.mismatches)")
if !report.mismatches.isEmpty {
    exit(1)
}
