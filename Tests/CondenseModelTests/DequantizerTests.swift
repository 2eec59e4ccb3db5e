import CondenseModel
import Foundation
import Testing

/// Every supported ggml type against gguf-py's `dequantize` (fixtures from scripts/gen-dequant-fixtures.py).
/// Tolerance: none. Both sides compute the same F32 products in the same order, so results must be bit-identical.
struct DequantizerTests {
    static let types: [(GGMLType, String)] = [
        (.f32, "F32"), (.f16, "F16"), (.bf16, "BF16"), (.q4_0, "Q4_0"), (.q4_1, "Q4_1"), (.q5_0, "Q5_0"),
        (.q5_1, "Q5_1"), (.q8_0, "Q8_0"), (.q4_K, "Q4_K"), (.q5_K, "Q5_K"), (.q6_K, "Q6_K"),
    ]

    @Test(arguments: types.map(\.1))
    func matchesGGUFPy(typeName: String) throws {
        let type = try #require(Self.types.first { $0.1 == typeName }?.0)
        #expect(type.description == typeName)
        let blocks = try LoaderFixtures.bytes("dequant/\(typeName).blocks")
        let expectedBytes = try LoaderFixtures.bytes("dequant/\(typeName).f32")
        let expected = expectedBytes.withUnsafeBytes { raw in
            (0..<(expectedBytes.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
        let actual = try blocks.withUnsafeBytes { raw in
            try GGMLDequantizer.dequantize(raw, type: type, elementCount: expected.count, tensor: typeName)
        }
        #expect(actual.count == expected.count)
        let mismatches = zip(actual, expected).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
        #expect(mismatches.isEmpty, "first mismatches: \(mismatches.prefix(4).map { "[\($0.offset)] \($0.element.0) vs \($0.element.1)" })")
    }

    /// Large inputs are split across threads; the split must not change a single value.
    @Test func parallelSplitMatchesSerialBlocks() throws {
        let blocks = try LoaderFixtures.bytes("dequant/Q4_1.blocks")
        let repeats = 400  // 48 blocks x 400 = 19,200 blocks, above the parallel threshold
        let large = [[UInt8]](repeating: blocks, count: repeats).flatMap { $0 }
        let elementsPerCopy = blocks.count / 20 * 32
        let small = try blocks.withUnsafeBytes { raw in
            try GGMLDequantizer.dequantize(raw, type: .q4_1, elementCount: elementsPerCopy)
        }
        let all = try large.withUnsafeBytes { raw in
            try GGMLDequantizer.dequantize(raw, type: .q4_1, elementCount: elementsPerCopy * repeats)
        }
        #expect(all == [[Float]](repeating: small, count: repeats).flatMap { $0 })
    }

    @Test func unsupportedTypeIsNamed() {
        let bytes = [UInt8](repeating: 0, count: 84)
        let error = loadError {
            try bytes.withUnsafeBytes { raw in
                try GGMLDequantizer.dequantize(raw, type: GGMLType(rawValue: 10), elementCount: 256, tensor: "blk.0.ffn_up.weight")
            }
        }
        #expect(error == .unsupportedTensorType(tensor: "blk.0.ffn_up.weight", type: "Q2_K"))
        #expect(GGMLType(rawValue: 99).description == "type#99")
    }

    @Test func wrongByteCountIsRejected() {
        let bytes = [UInt8](repeating: 0, count: 19)
        let error = loadError {
            try bytes.withUnsafeBytes { raw in
                try GGMLDequantizer.dequantize(raw, type: .q4_1, elementCount: 32, tensor: "t")
            }
        }
        guard case .truncated(let path, _)? = error else {
            Issue.record("expected truncated, got \(String(describing: error))")
            return
        }
        #expect(path == "t")
    }
}
