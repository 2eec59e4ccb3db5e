import Dispatch

/// Converts ggml tensor data (plain floats or block-quantized) to F32 with the same F32 operations,
/// in the same order, as ggml's reference `dequantize_row_*` and gguf-py's `dequantize` (tested
/// bit-identical against the latter).
public enum GGMLDequantizer {
    /// Tensors at least this large are split across cores; smaller ones are not worth a dispatch.
    private static let parallelThresholdBlocks = 4096

    /// Dequantizes `elementCount` elements of `type` from `bytes`, which must hold exactly the
    /// blocks they need. `tensor` only names the data in errors.
    public static func dequantize(
        _ bytes: UnsafeRawBufferPointer, type: GGMLType, elementCount: Int, tensor: String = "<data>"
    ) throws(ModelLoadError) -> [Float] {
        guard type.isDequantizable, let layout = type.blockLayout else {
            throw .unsupportedTensorType(tensor: tensor, type: type.description)
        }
        guard elementCount >= 0, elementCount % layout.elements == 0 else {
            throw .corrupted(path: tensor, detail: "\(elementCount) elements is not a whole number of \(type) blocks of \(layout.elements)")
        }
        let blockCount = elementCount / layout.elements
        guard bytes.count == blockCount * layout.bytes else {
            throw .truncated(path: tensor, detail: "\(type) data of \(elementCount) elements needs \(blockCount * layout.bytes) bytes, has \(bytes.count)")
        }
        guard elementCount > 0, let source = bytes.baseAddress else { return [] }
        return [Float](unsafeUninitializedCapacity: elementCount) { output, initialized in
            guard let destination = output.baseAddress else { return }
            let chunkCount = blockCount >= parallelThresholdBlocks ? min(64, blockCount / (parallelThresholdBlocks / 4)) : 1
            if chunkCount <= 1 {
                dequantizeBlocks(type, source, destination, 0..<blockCount, layout)
            } else {
                // Both buffers outlive concurrentPerform, and each iteration writes a disjoint block range.
                nonisolated(unsafe) let sharedSource = source
                nonisolated(unsafe) let sharedDestination = destination
                DispatchQueue.concurrentPerform(iterations: chunkCount) { chunk in
                    let start = blockCount * chunk / chunkCount
                    let end = blockCount * (chunk + 1) / chunkCount
                    dequantizeBlocks(type, sharedSource, sharedDestination, start..<end, layout)
                }
            }
            initialized = elementCount
        }
    }

    private static func dequantizeBlocks(
        _ type: GGMLType, _ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>,
        _ blocks: Range<Int>, _ layout: (elements: Int, bytes: Int)
    ) {
        let input = source + blocks.lowerBound * layout.bytes
        let output = destination + blocks.lowerBound * layout.elements
        let count = blocks.count
        // Plain float types are one element per "block": convert them in one tight loop each.
        switch type {
        case .f32:
            UnsafeMutableRawPointer(output).copyMemory(from: input, byteCount: count * 4)
            return
        case .f16:
            for index in 0..<count { output[index] = halfToFloat(input + 2 * index) }
            return
        case .bf16:
            for index in 0..<count {
                let bits = UInt16(littleEndian: input.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self))
                output[index] = Float(bitPattern: UInt32(bits) << 16)
            }
            return
        default:
            break
        }
        // Inlined per type so that each kernel is specialised into its own loop.
        @inline(__always)
        func eachBlock(_ kernel: (UnsafeRawPointer, UnsafeMutablePointer<Float>) -> Void) {
            for block in 0..<count { kernel(input + block * layout.bytes, output + block * layout.elements) }
        }
        switch type {
        case .q4_0: eachBlock(q4_0)
        case .q4_1: eachBlock(q4_1)
        case .q5_0: eachBlock(q5_0)
        case .q5_1: eachBlock(q5_1)
        case .q8_0: eachBlock(q8_0)
        case .q4_K: eachBlock(q4_K)
        case .q5_K: eachBlock(q5_K)
        case .q6_K: eachBlock(q6_K)
        default: preconditionFailure("\(type) passed the isDequantizable check")
        }
    }

    @inline(__always)
    private static func halfToFloat(_ pointer: UnsafeRawPointer) -> Float {
        Float(Float16(bitPattern: UInt16(littleEndian: pointer.loadUnaligned(as: UInt16.self))))
    }

    // The kernels are plain loops over bytes with constant trip counts: the optimiser vectorises them
    // (AVX2 with the package's x86-64-v3 flags), and unlike generic SIMD types they stay fast in debug builds.

    /// 32 elements: f16 scale d, 16 bytes of nibbles (low nibbles are elements 0-15, high 16-31), x = (q - 8) * d.
    @inline(__always)
    private static func q4_0(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>) {
        let d = halfToFloat(input)
        let quants = (input + 2).assumingMemoryBound(to: UInt8.self)
        for index in 0..<16 {
            let byte = quants[index]
            output[index] = Float(Int32(byte & 0x0F) - 8) * d
            output[index + 16] = Float(Int32(byte >> 4) - 8) * d
        }
    }

    /// 32 elements: f16 scale d, f16 minimum m, 16 bytes of nibbles, x = q * d + m.
    @inline(__always)
    private static func q4_1(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>) {
        let d = halfToFloat(input)
        let m = halfToFloat(input + 2)
        let quants = (input + 4).assumingMemoryBound(to: UInt8.self)
        for index in 0..<16 {
            let byte = quants[index]
            output[index] = Float(byte & 0x0F) * d + m
            output[index + 16] = Float(byte >> 4) * d + m
        }
    }

    /// 32 elements: f16 d, u32 fifth bits (bit i belongs to element i), 16 bytes of nibbles, x = (q - 16) * d.
    @inline(__always)
    private static func q5_0(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>) {
        let d = halfToFloat(input)
        let fifth = UInt32(littleEndian: input.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        let quants = (input + 6).assumingMemoryBound(to: UInt8.self)
        for index in 0..<16 {
            let byte = UInt32(quants[index])
            let low = (byte & 0x0F) | (((fifth >> UInt32(index)) & 1) << 4)
            let high = (byte >> 4) | (((fifth >> UInt32(index + 16)) & 1) << 4)
            output[index] = Float(Int32(low) - 16) * d
            output[index + 16] = Float(Int32(high) - 16) * d
        }
    }

    /// 32 elements: f16 d, f16 m, u32 fifth bits, 16 bytes of nibbles, x = q * d + m.
    @inline(__always)
    private static func q5_1(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>) {
        let d = halfToFloat(input)
        let m = halfToFloat(input + 2)
        let fifth = UInt32(littleEndian: input.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let quants = (input + 8).assumingMemoryBound(to: UInt8.self)
        for index in 0..<16 {
            let byte = UInt32(quants[index])
            let low = (byte & 0x0F) | (((fifth >> UInt32(index)) & 1) << 4)
            let high = (byte >> 4) | (((fifth >> UInt32(index + 16)) & 1) << 4)
            output[index] = Float(low) * d + m
            output[index + 16] = Float(high) * d + m
        }
    }

    /// 32 elements: f16 d, 32 signed bytes, x = q * d.
    @inline(__always)
    private static func q8_0(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>) {
        let d = halfToFloat(input)
        let quants = (input + 2).assumingMemoryBound(to: Int8.self)
        for index in 0..<32 { output[index] = Float(quants[index]) * d }
    }

    /// The 8 six-bit scales and minimums of a Q4_K/Q5_K super-block, packed in 12 bytes: bytes 0-3 hold
    /// scales 0-3 (low 6 bits), bytes 4-7 minimums 0-3, bytes 8-11 the low 4 bits of scales/minimums 4-7,
    /// whose top 2 bits are the top bits of bytes 0-3 / 4-7.
    @inline(__always)
    private static func kScaleAndMin(_ packed: UnsafePointer<UInt8>, _ index: Int) -> (scale: Float, min: Float) {
        if index < 4 {
            return (Float(packed[index] & 63), Float(packed[index + 4] & 63))
        }
        let scale = (packed[index + 4] & 0x0F) | ((packed[index - 4] >> 6) << 4)
        let minimum = (packed[index + 4] >> 4) | ((packed[index] >> 6) << 4)
        return (Float(scale), Float(minimum))
    }

    /// 256 elements in 8 sub-blocks of 32: f16 d, f16 dmin, 12 bytes of scales, 128 bytes of nibbles.
    /// Sub-blocks 2g and 2g+1 are the low and high nibbles of bytes 32g..<32g+32; x = (d*sc) * q - dmin*m.
    @inline(__always)
    private static func q4_K(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>) {
        let d = halfToFloat(input)
        let dmin = halfToFloat(input + 2)
        let scales = (input + 4).assumingMemoryBound(to: UInt8.self)
        let quants = (input + 16).assumingMemoryBound(to: UInt8.self)
        for group in 0..<4 {
            let (lowScale, lowMin) = kScaleAndMin(scales, 2 * group)
            let (highScale, highMin) = kScaleAndMin(scales, 2 * group + 1)
            let lowFactor = d * lowScale, lowOffset = dmin * lowMin
            let highFactor = d * highScale, highOffset = dmin * highMin
            let bytes = quants + 32 * group
            let out = output + 64 * group
            for index in 0..<32 {
                out[index] = Float(bytes[index] & 0x0F) * lowFactor - lowOffset
                out[index + 32] = Float(bytes[index] >> 4) * highFactor - highOffset
            }
        }
    }

    /// Q4_K plus 32 bytes of fifth bits before the nibbles: bit s of byte l is the fifth bit of element l
    /// of sub-block s.
    @inline(__always)
    private static func q5_K(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>) {
        let d = halfToFloat(input)
        let dmin = halfToFloat(input + 2)
        let scales = (input + 4).assumingMemoryBound(to: UInt8.self)
        let fifth = (input + 16).assumingMemoryBound(to: UInt8.self)
        let quants = (input + 48).assumingMemoryBound(to: UInt8.self)
        for group in 0..<4 {
            let (lowScale, lowMin) = kScaleAndMin(scales, 2 * group)
            let (highScale, highMin) = kScaleAndMin(scales, 2 * group + 1)
            let lowFactor = d * lowScale, lowOffset = dmin * lowMin
            let highFactor = d * highScale, highOffset = dmin * highMin
            let lowShift = UInt8(2 * group), highShift = UInt8(2 * group + 1)
            let bytes = quants + 32 * group
            let out = output + 64 * group
            for index in 0..<32 {
                let low = (bytes[index] & 0x0F) | (((fifth[index] >> lowShift) & 1) << 4)
                let high = (bytes[index] >> 4) | (((fifth[index] >> highShift) & 1) << 4)
                out[index] = Float(low) * lowFactor - lowOffset
                out[index + 32] = Float(high) * highFactor - highOffset
            }
        }
    }

    /// 256 elements: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 signed scales (one per 16
    /// elements), f16 d. Element 128h + 32s + l takes the nibble of ql[64h + 32(s % 2) + l] (the high nibble
    /// when s >= 2) and bits 2s..2s+1 of qh[32h + l]; x = (d * scale) * (q - 32).
    @inline(__always)
    private static func q6_K(_ input: UnsafeRawPointer, _ output: UnsafeMutablePointer<Float>) {
        let lowParts = input.assumingMemoryBound(to: UInt8.self)
        let highParts = (input + 128).assumingMemoryBound(to: UInt8.self)
        let scales = (input + 192).assumingMemoryBound(to: Int8.self)
        let d = halfToFloat(input + 208)
        for half in 0..<2 {
            for quarter in 0..<4 {
                let nibbleShift = UInt8(quarter >= 2 ? 4 : 0)
                let highShift = UInt8(2 * quarter)
                let low = lowParts + 64 * half + 32 * (quarter % 2)
                let high = highParts + 32 * half
                let element = 128 * half + 32 * quarter
                let firstScale = d * Float(scales[element / 16])
                let secondScale = d * Float(scales[element / 16 + 1])
                for index in 0..<32 {
                    let q = ((low[index] >> nibbleShift) & 0x0F) | (((high[index] >> highShift) & 3) << 4)
                    output[element + index] = Float(Int32(q) - 32) * (index < 16 ? firstScale : secondScale)
                }
            }
        }
    }
}
