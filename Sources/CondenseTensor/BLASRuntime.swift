import COpenBLAS
import COpenBLASBoot

/// The OpenBLAS build and kernel set this process runs, for `condense info` and start-up logs.
///
/// Kernel selection itself happens before `main` (see `COpenBLASBoot`): OpenBLAS's own CPU detection is
/// kept when it uses the CPU's widest vectors, else replaced (SkylakeX on AVX-512, Haswell on AVX2), and a
/// user-set `OPENBLAS_CORETYPE` is always respected.
public enum BLASRuntime {
    /// How the kernel set was chosen.
    public enum CoreSelection: Sendable, Equatable, CustomStringConvertible {
        /// Platform or OpenBLAS build the boot hook does not manage (no DYNAMIC_ARCH, not Linux x86-64).
        case notManaged
        /// The user's `OPENBLAS_CORETYPE`.
        case environment
        /// OpenBLAS's own detection, which already uses the CPU's widest vectors.
        case detected
        /// OpenBLAS detected `detected` (slower kernels than the CPU supports); replaced at start-up.
        case overridden(detected: String)

        public var description: String {
            switch self {
            case .notManaged: "not managed"
            case .environment: "from OPENBLAS_CORETYPE"
            case .detected: "detected by OpenBLAS"
            case .overridden(let detected): "replaces OpenBLAS's choice \(detected)"
            }
        }
    }

    /// Kernel set in use, e.g. "SkylakeX", "Cooperlake", "Haswell".
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// Threads OpenBLAS uses per call (process-wide).
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Sets the process-wide OpenBLAS thread count (at least 1).
    public static func setThreads(_ count: Int) {
        openblas_set_num_threads(Int32(clamping: max(1, count)))
    }

    /// OpenBLAS build configuration, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64".
    public static var configuration: String {
        guard let config = openblas_get_config() else { return "unknown" }
        return String(cString: config)
    }

    public static var coreSelection: CoreSelection {
        let report = condense_openblas_boot_report()
        switch report.selection {
        case CondenseOpenBLASCoreFromEnvironment: return .environment
        case CondenseOpenBLASCoreDetected: return .detected
        case CondenseOpenBLASCoreOverridden:
            let detected = withUnsafeBytes(of: report.detectedCore) { bytes in
                String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
            return .overridden(detected: detected)
        default: return .notManaged
        }
    }

    /// Whether start-up supplied a short `OPENBLAS_THREAD_TIMEOUT` (the user had not set one).
    public static var threadTimeoutSupplied: Bool { condense_openblas_boot_report().threadTimeoutSupplied != 0 }

    /// Whether the kernel set computes each row of a product independently of the other rows, bit for bit
    /// (given `GEMM.linear`'s padding of tiny products). Measured on OpenBLAS 0.3.21: true of the AVX-512
    /// SkylakeX/Cooperlake kernels (which also sum in `PackedWeight`'s order); the Haswell/Zen (AVX2) kernels
    /// round a row differently with its offset in the batch and the batch's row count. Only training uses
    /// OpenBLAS: the inference engine's products are row-invariant on every CPU (`PackedWeight`).
    public static var rowInvariantKernels: Bool { ["SkylakeX", "Cooperlake"].contains(coreName) }

    /// One line for logs: "OpenBLAS core Cooperlake (detected by OpenBLAS), 2 threads; <configuration>".
    public static var summary: String {
        "OpenBLAS core \(coreName) (\(coreSelection)), \(threads) threads; \(configuration)"
    }
}
