import CCondenseKernels

/// A linear layer's weight packed for products with the inference engine's own kernels
/// (`CCondenseKernels`): panels of 32 output rows stored k-major, written once at load.
///
/// Why not OpenBLAS's sgemm, which training uses: sgemm packs its operands on every call, so with a few
/// token rows (one short text) each call copies all weights and the copy costs as much as the arithmetic.
/// Kept packed, a short text runs ~1.5-2x faster and a large batch no slower. Each output is summed in
/// the order OpenBLAS's SkylakeX/Cooperlake sgemm uses, so the results are the same floats as that sgemm's,
/// and a row never depends on the other rows of the product: a text's embedding is the same, bit for bit,
/// alone or in any batch, on every CPU.
public final class PackedWeight: @unchecked Sendable {
    // @unchecked: `storage` is written only in `init` and read-only afterwards.
    public let outFeatures: Int
    public let inFeatures: Int
    private let storage: UnsafeMutablePointer<Float>

    /// Packs `parts` (all with the same number of columns) stacked row-wise: part 0's rows first.
    public init(stacking parts: [Matrix]) {
        let inFeatures = parts.first?.cols ?? 0
        precondition(parts.allSatisfy { $0.cols == inFeatures }, "stacked parts need the same input width")
        let outFeatures = parts.reduce(0) { $0 + $1.rows }
        let count = max(1, condense_packed_count(outFeatures, inFeatures))
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Float>.stride, alignment: 64)
        let packed = raw.initializeMemory(as: Float.self, repeating: 0, count: count)
        var firstRow = 0
        for part in parts {
            part.data.withUnsafeBufferPointer { rows in
                guard let rows = rows.baseAddress else { return }
                condense_pack_rows(rows, part.rows, part.cols, inFeatures, firstRow, packed)
            }
            firstRow += part.rows
        }
        storage = packed
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
    }

    /// A single matrix.
    public convenience init(_ weight: Matrix) {
        self.init(stacking: [weight])
    }

    deinit { storage.deallocate() }

    /// output[rows x outFeatures] (row stride `outputStride`) = input[rows x inFeatures]·Wᵀ, or += when
    /// `accumulate`; uses `PackedWeight.threads` threads.
    public func apply(
        _ input: UnsafePointer<Float>, rows: Int, inputStride: Int? = nil,
        into output: UnsafeMutablePointer<Float>, outputStride: Int? = nil, accumulate: Bool = false
    ) {
        guard rows > 0, outFeatures > 0 else { return }
        condense_packed_linear(input, rows, inputStride ?? inFeatures, storage, outFeatures, inFeatures,
                               output, outputStride ?? outFeatures, accumulate ? 1 : 0)
    }

    /// The same product on the calling thread with the given kernels (tests compare instruction sets).
    public func apply(
        kernels: InstructionSet, _ input: UnsafePointer<Float>, rows: Int, inputStride: Int? = nil,
        into output: UnsafeMutablePointer<Float>, outputStride: Int? = nil, accumulate: Bool = false
    ) {
        guard rows > 0, outFeatures > 0 else { return }
        condense_packed_linear_with(kernels.cValue, input, rows, inputStride ?? inFeatures, storage, outFeatures,
                                    inFeatures, output, outputStride ?? outFeatures, accumulate ? 1 : 0)
    }

    // MARK: Kernels and threads

    /// Vector instructions a kernel is written with.
    public enum InstructionSet: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
        case portable = 0, avx2, avx512

        var cValue: CondenseISA { CondenseISA(rawValue: UInt32(rawValue)) }

        public var description: String {
            switch self {
            case .portable: "portable C"
            case .avx2: "AVX2"
            case .avx512: "AVX-512"
            }
        }

        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// The kernels `apply` uses: the best this CPU runs, unless `CONDENSE_KERNELS` (`avx2`, `portable`) asks
    /// for narrower ones (to compare them: the results are the same floats).
    public static var instructionSet: InstructionSet {
        InstructionSet(rawValue: Int(condense_kernel_isa().rawValue)) ?? .portable
    }

    /// The widest kernels this CPU runs (`apply(kernels:)` takes any up to these).
    public static var bestInstructionSet: InstructionSet {
        InstructionSet(rawValue: Int(condense_best_isa().rawValue)) ?? .portable
    }

    /// Threads a product may use, the caller included (default: `OPENBLAS_NUM_THREADS`, as for training, at
    /// most the CPUs this process may run on; else those CPUs).
    public static var threads: Int { Int(condense_linear_threads()) }

    public static func setThreads(_ count: Int) {
        condense_linear_set_threads(Int32(clamping: max(1, count)))
    }

    /// One line for logs and `condense info`.
    public static var summary: String {
        "packed-panel \(instructionSet) kernels, \(threads) threads"
    }
}
