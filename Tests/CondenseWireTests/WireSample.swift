import CondenseWire
import Foundation
import Testing

/// One sample message (see WireSamples.swift) with type-erased checks, so parameterized tests
/// can cover every message type.
struct WireSample: Sendable, CustomTestStringConvertible {
    let messageName: String
    let variant: Int
    /// Swift encoding of the sample.
    let encoded: [UInt8]
    /// Decodes bytes as this sample's type and compares with the sample.
    let decodesToSample: @Sendable ([UInt8]) throws(WireError) -> Bool
    /// Decodes bytes as this sample's type and encodes the result again.
    let reencode: @Sendable ([UInt8]) throws(WireError) -> [UInt8]
    /// Encoding of the value decoded from no bytes (nil if that failed); proto3 defaults encode to nothing.
    let encodedDefault: [UInt8]?

    init<Message: WireMessage & Equatable>(_ messageName: String, variant: Int, _ sample: Message) {
        self.messageName = messageName
        self.variant = variant
        encoded = sample.serializedBytes()
        decodesToSample = { bytes throws(WireError) in try Message(serializedBytes: bytes) == sample }
        reencode = { bytes throws(WireError) in try Message(serializedBytes: bytes).serializedBytes() }
        encodedDefault = (try? Message(serializedBytes: []))?.serializedBytes()
    }

    /// Name of the fixture file holding Python's encoding of the same sample.
    var fileName: String { "\(messageName).\(variant).bin" }
    var testDescription: String { fileName }
}

enum WireTestPaths {
    /// The package root, found from this file's location (Tests/CondenseWireTests/...).
    static let root = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Tests/CondenseWireTests/Fixtures")
}
