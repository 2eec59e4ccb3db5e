import CondenseTensor
import Foundation

/// Sections that run OpenBLAS on one thread, process-wide, while their own threads share the cores.
/// Sections may overlap (trainers on several threads): the first to enter saves the thread count and
/// sets 1, the last to leave restores it, so overlapping sections never leave the process at 1 thread.
enum SingleThreadedBLAS {
    private final class State: @unchecked Sendable {
        let lock = NSLock()
        var depth = 0
        var savedThreads = 1
    }

    private static let state = State()

    static func run(_ body: () -> Void) {
        state.lock.withLock {
            if state.depth == 0 {
                state.savedThreads = BLASRuntime.threads
                BLASRuntime.setThreads(1)
            }
            state.depth += 1
        }
        defer {
            state.lock.withLock {
                state.depth -= 1
                if state.depth == 0 { BLASRuntime.setThreads(state.savedThreads) }
            }
        }
        body()
    }
}
