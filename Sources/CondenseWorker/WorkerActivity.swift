import CondenseRPC
import CondenseWire
import Foundation

/// What a worker has done, for its operations port: whether its coordinator session is open, and
/// the work finished since start. Updated once per session change, batch or training step, under a
/// lock (the work itself takes milliseconds to minutes).
public final class WorkerActivity: @unchecked Sendable {
    /// How a training job ended on this worker.
    public enum JobOutcome: String, Sendable, CaseIterable {
        case succeeded, failed
        /// Cancelled by the coordinator, or the session was lost (the coordinator re-queues it).
        case stopped
        /// Checkpointed at the step it reached and given back (worker shutdown or drain): it resumes elsewhere.
        case handedBack = "handed_back"
    }

    public let kind: WorkerKind
    private let lock = NSLock()
    private var sessionOpen = false
    private var batches: UInt64 = 0
    private var texts: UInt64 = 0
    private var tokens: UInt64 = 0
    private var steps: UInt64 = 0
    private var jobs: [JobOutcome: UInt64] = [:]

    public init(kind: WorkerKind) {
        self.kind = kind
    }

    func sessionOpened() { lock.withLock { sessionOpen = true } }
    func sessionClosed() { lock.withLock { sessionOpen = false } }

    func batchDone(texts: Int, tokens: UInt64) {
        lock.withLock {
            batches += 1
            self.texts += UInt64(texts)
            self.tokens += tokens
        }
    }

    func stepDone() { lock.withLock { steps += 1 } }
    func jobEnded(_ outcome: JobOutcome) { lock.withLock { jobs[outcome, default: 0] += 1 } }

    /// A worker exists only once its model is loaded, so it is ready while its session is open.
    public func readiness() -> Readiness {
        lock.withLock { sessionOpen } ? .ready : .notReady("not registered with the coordinator")
    }

    /// `condense_worker_*` families of this worker's kind.
    public func collectMetrics() -> [MetricFamily] {
        lock.withLock {
            var families: [MetricFamily] = [
                .gauge("condense_worker_session_open", help: "1 while the session with the coordinator is registered.", sessionOpen ? 1 : 0),
            ]
            if kind == .train {
                families.append(.counter("condense_worker_training_steps_total", help: "Optimizer steps completed.", Double(steps)))
                families.append(.init(
                    name: "condense_worker_training_jobs_total", help: "Training jobs that ended on this worker, by outcome.", kind: .counter,
                    samples: JobOutcome.allCases.map { MetricSample(Double(jobs[$0] ?? 0), labels: [MetricLabel("outcome", $0.rawValue)]) }))
            } else {
                families.append(.counter("condense_worker_batches_total", help: "Embedding batches answered.", Double(batches)))
                families.append(.counter("condense_worker_texts_total", help: "Texts embedded (failed items included).", Double(texts)))
                families.append(.counter(
                    "condense_worker_tokens_total", help: "Tokens run through the model, prompts included; its rate is tokens per second.",
                    Double(tokens)))
            }
            return families
        }
    }
}
