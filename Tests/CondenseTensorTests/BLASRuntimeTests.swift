import Foundation
import Testing
@testable import CondenseTensor

@Suite struct BLASRuntimeTests {
    /// CPU flags from /proc/cpuinfo (Linux); empty elsewhere.
    private static var cpuFlags: Set<Substring> {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return [] }
        return Set(line.split(separator: " "))
    }

    @Test func reportsCoreThreadsAndConfiguration() {
        #expect(!BLASRuntime.coreName.isEmpty)
        #expect(BLASRuntime.coreName != "unknown")
        #expect(BLASRuntime.threads >= 1)
        #expect(BLASRuntime.configuration.contains("OpenBLAS"))
        #expect(BLASRuntime.summary.contains(BLASRuntime.coreName))
    }

    @Test func avx512MachinesDoNotRunPrescottKernels() {
        guard Self.cpuFlags.contains("avx512f") else { return }
        #expect(BLASRuntime.coreName != "Prescott")
        #expect(["SkylakeX", "Cooperlake", "SapphireRapids"].contains(BLASRuntime.coreName))
    }

    @Test func bootHookRanInTheTestRunner() {
        #if os(Linux) && arch(x86_64)
        #expect(BLASRuntime.coreSelection != .notManaged)
        if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] != nil {
            #expect(BLASRuntime.coreSelection == .environment)
        }
        // The hook removes the variables it set again: the process environment stays the user's.
        if BLASRuntime.coreSelection != .environment {
            #expect(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil)
        }
        if BLASRuntime.threadTimeoutSupplied {
            #expect(ProcessInfo.processInfo.environment["OPENBLAS_THREAD_TIMEOUT"] == nil)
        }
        #endif
    }
}
