// What both benchmarks measure with: wall and CPU time, peak RSS, and the sgemm ceiling of this machine.
import CondenseTensor
import Foundation

/// Wall-clock and process CPU seconds (all threads) of `body`. On a shared, busy machine wall time
/// swings with other load; rates per CPU-second stay comparable (spinning BLAS workers count too).
public struct Timing {
    public var wall: Double
    public var cpu: Double
}

public func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

public func measure(_ body: () throws -> Void) rethrows -> Timing {
    let start = DispatchTime.now().uptimeNanoseconds, cpuStart = processCPUSeconds()
    try body()
    return Timing(wall: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, cpu: processCPUSeconds() - cpuStart)
}

public func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// Peak resident set of the process so far, in MB (Linux reports ru_maxrss in KB).
public func peakRSSMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// Best GFLOPS per wall-clock second and per CPU-second of the reference GEMM, shaped like the models'
/// largest products ([~1k tokens x 576] · [1536 x 576]ᵀ), run the two ways the cores can share GEMM work: one
/// GEMM on all OpenBLAS threads, and (as the trainer's parts run) one single-threaded GEMM per thread
/// side by side, each into its own output.
public func sgemmGFLOPS(sideBySide: Bool) -> (wall: Double, perCPUSecond: Double) {
    let m = 1024, n = 1536, k = 576
    let copies = sideBySide ? BLASRuntime.threads : 1
    let a = (0..<(m * k)).map { Float($0 % 97) * 1e-3 }, b = (0..<(n * k)).map { Float($0 % 89) * 1e-3 }
    var c = [Float](repeating: 0, count: copies * m * n)
    var best = (wall: 0.0, perCPUSecond: 0.0)
    let blasThreads = BLASRuntime.threads
    if sideBySide { BLASRuntime.setThreads(1) }
    defer { BLASRuntime.setThreads(blasThreads) }
    a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                guard let a = a.baseAddress, let b = b.baseAddress, let c = c.baseAddress else { return }
                nonisolated(unsafe) let (input, weight, output) = (a, b, c)
                for trial in 0..<6 {
                    let repeats = 20
                    let timing = measure {
                        DispatchQueue.concurrentPerform(iterations: copies) { copy in
                            for _ in 0..<repeats {
                                GEMM.linear(input, rows: m, weight: weight, outFeatures: n, inFeatures: k, into: output + copy * m * n)
                            }
                        }
                    }
                    let flops = 2 * Double(m * n * k * repeats * copies) / 1e9
                    if trial > 0 { best = (max(best.wall, flops / timing.wall), max(best.perCPUSecond, flops / timing.cpu)) }
                }
            }
        }
    }
    return best
}

