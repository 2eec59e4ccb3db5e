/// NumPy `.npy` files (format version 1.0).
public enum NPYFormat {
    /// A float32 matrix of shape (rows, columns), C order, little-endian (`<f4`); the header is
    /// space-padded so that the data starts at a multiple of 64 bytes.
    /// `values` holds rows × columns numbers, row after row.
    public static func float32Matrix(rows: Int, columns: Int, values: [Float]) -> [UInt8] {
        precondition(values.count == rows * columns, "values must hold rows x columns numbers")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
        let preamble = 10  // magic (6) + version (2) + header length (2)
        let unpadded = preamble + header.utf8.count + 1  // + the closing newline
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let headerLength = header.utf8.count
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        bytes.append(UInt8(truncatingIfNeeded: headerLength))
        bytes.append(UInt8(truncatingIfNeeded: headerLength >> 8))
        bytes.append(contentsOf: header.utf8)
        bytes.reserveCapacity(bytes.count + values.count * 4)
        for value in values {
            let bits = value.bitPattern.littleEndian
            withUnsafeBytes(of: bits) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }
}
