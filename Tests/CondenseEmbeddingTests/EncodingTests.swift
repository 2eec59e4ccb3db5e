import CondenseEmbedding
import Foundation
import Testing

@Suite struct EncodedEmbeddingTests {
    let vector: [Float] = [0.5, -1.25, 0.001, 3.75, -0.3, 0, 2.2, -2.2, 0.7]

    @Test func float32KeepsValues() {
        let encoded = EncodedEmbedding(vector, precision: .float32)
        #expect(encoded.values == vector)
        #expect(encoded.data.isEmpty)
        #expect(encoded.decoded() == vector)
    }

    @Test func float16IsLittleEndianHalfAndRoundTrips() {
        let encoded = EncodedEmbedding([1, -2], precision: .float16)
        #expect(encoded.data == [0x00, 0x3C, 0x00, 0xC0])
        let roundTrip = EncodedEmbedding(vector, precision: .float16).decoded()
        for (a, e) in zip(roundTrip, vector) { #expect(abs(a - e) <= abs(e) / 1024 + 1e-7) }
    }

    @Test func int8RoundTripsWithinHalfAStep() {
        let encoded = EncodedEmbedding(vector, precision: .int8)
        #expect(encoded.scale == 3.75 / 127)
        #expect(encoded.data.count == vector.count)
        #expect(Int8(bitPattern: encoded.data[3]) == 127)
        for (a, e) in zip(encoded.decoded(), vector) { #expect(abs(a - e) <= encoded.scale / 2 + 1e-6) }
        #expect(EncodedEmbedding([0, 0], precision: .int8).decoded() == [0, 0])
    }

    @Test func binaryPacksSignBitsMostSignificantFirst() {
        let encoded = EncodedEmbedding(vector, precision: .binary)
        // Positive: indexes 0, 2, 3, 6, 8 -> 1011 0010 | 1000 0000.
        #expect(encoded.data == [0b1011_0010, 0b1000_0000])
        #expect(encoded.dimensions == 9)
        #expect(encoded.decoded() == vector.map { $0 > 0 ? 1 : -1 })
    }
}

@Suite struct NPYFormatTests {
    @Test func headerIsVersion1PaddedTo64Bytes() {
        let bytes = NPYFormat.float32Matrix(rows: 2, columns: 3, values: [1, 2, 3, 4, 5, 6])
        #expect(Array(bytes.prefix(8)) == [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        #expect((10 + headerLength) % 64 == 0)
        #expect(bytes[10 + headerLength - 1] == UInt8(ascii: "\n"))
        let header = String(decoding: bytes[10..<(10 + headerLength)], as: UTF8.self)
        #expect(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"))
        #expect(bytes.count == 10 + headerLength + 24)
        #expect(Array(bytes[(10 + headerLength)...].prefix(4)) == [0x00, 0x00, 0x80, 0x3F])  // 1.0f
    }

    @Test(.enabled(if: Python.hasNumPy, "python3 with numpy is not available"))
    func numpyReadsTheSameValues() throws {
        let values: [Float] = [0.5, -1.25, 3e-8, 1e6, -0, 7, .pi, -2.5, 42, 1, 2, 3]
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("condense-npy-\(UUID().uuidString).npy")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(NPYFormat.float32Matrix(rows: 4, columns: 3, values: values)).write(to: url)
        let output = try Python.run("""
            import numpy as np, sys
            a = np.load(sys.argv[1])
            assert a.dtype == np.float32 and a.shape == (4, 3), (a.dtype, a.shape)
            print(' '.join('%.17g' % x for x in a.astype(np.float64).ravel().tolist()))
            """, arguments: [url.path])
        // float32 -> float64 is exact and 17 significant digits round-trip a float64.
        let parsed = output.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { Double(String($0)) }
        #expect(parsed == values.map { Double($0) })
    }
}

@Suite struct EmbeddingFilesTests {
    let results: [Result<[Float], EmbeddingError>] = [
        .success([0.1, -2.5e-7, 3, 1e20]),
        .failure(.textTooLong(tokens: 9, limit: 4)),
        .success([.pi, 0, -1, 0.333333343]),
    ]

    @Test func jsonLinesRoundTripValuesAndCarryErrors() throws {
        let lines = String(decoding: EmbeddingFiles.jsonLines(results), as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 3)
        for (index, line) in lines.enumerated() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["index"] as? Int == index)
            switch results[index] {
            case .success(let vector):
                let numbers = try #require(object["embedding"] as? [NSNumber])
                #expect(numbers.map { Float($0.doubleValue) } == vector)
            case .failure(let error):
                #expect(object["error"] as? String == error.description)
            }
        }
        #expect(String(decoding: EmbeddingFiles.jsonLines([.success([.nan, 1])]), as: UTF8.self)
            == "{\"index\": 0, \"embedding\": [null, 1.0]}\n")
    }

    @Test func npyHasNaNRowsForFailedItems() {
        let bytes = EmbeddingFiles.npy(results, dimensions: 4)
        let data = Array(bytes.suffix(3 * 4 * 4))
        let values = (0..<12).map { index in
            Float(bitPattern: UInt32(data[4 * index]) | UInt32(data[4 * index + 1]) << 8
                | UInt32(data[4 * index + 2]) << 16 | UInt32(data[4 * index + 3]) << 24)
        }
        #expect(Array(values[0..<4]) == [0.1, -2.5e-7, 3, 1e20])
        #expect(values[4..<8].allSatisfy { $0.isNaN })
        #expect(Array(values[8..<12]) == [.pi, 0, -1, 0.333333343])
    }
}
