import Foundation

/// Writes `.safetensors` files (and shard indexes) for tests.
struct SafeTensorsTestWriter {
    struct Tensor {
        var name: String
        var dtype: String
        var shape: [Int]
        var data: [UInt8]
        /// Overrides the computed data_offsets, for malformed files.
        var offsets: [Int]?
    }

    var tensors: [Tensor] = []
    /// Replaces the generated JSON header, for malformed files.
    var headerOverride: String?

    static func f32(_ name: String, shape: [Int], values: [Float]) -> Tensor {
        var bytes: [UInt8] = []
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 } }
        return Tensor(name: name, dtype: "F32", shape: shape, data: bytes)
    }

    func bytes() -> [UInt8] {
        var entries: [String] = []
        var offset = 0
        var data: [UInt8] = []
        for tensor in tensors {
            let offsets = tensor.offsets ?? [offset, offset + tensor.data.count]
            entries.append("\"\(tensor.name)\":{\"dtype\":\"\(tensor.dtype)\",\"shape\":\(tensor.shape),\"data_offsets\":\(offsets)}")
            offset += tensor.data.count
            data += tensor.data
        }
        let header = Array((headerOverride ?? "{\"__metadata__\":{\"format\":\"pt\"},\(entries.joined(separator: ","))}").utf8)
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out += $0 }
        return out + header + data
    }

    /// `model.safetensors.index.json` mapping each tensor name to its shard file.
    static func index(_ shardOfTensor: [(String, String)]) -> [UInt8] {
        let map = shardOfTensor.map { "\"\($0.0)\":\"\($0.1)\"" }.joined(separator: ",")
        return Array("{\"metadata\":{\"total_size\":0},\"weight_map\":{\(map)}}".utf8)
    }
}
