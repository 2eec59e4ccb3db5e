import CondenseWire

/// Limits and timing of a coordinator.
public struct CoordinatorSettings: Sendable {
    /// Texts per EmbedBatch assignment. Batches are cut from the stream in input order, so the same
    /// input always yields the same batches (and the same vectors) whichever worker runs them.
    public var batchTexts: Int
    /// Most texts accepted and not yet delivered, over all calls. A call that would go beyond it
    /// while it has nothing in flight gets RESOURCE_EXHAUSTED; a stream with work in flight waits.
    public var maxQueuedTexts: Int
    /// Most texts one EmbedStream may have accepted and not yet delivered; its input is read no
    /// further until results go out (flow control then slows the client).
    public var streamWindowTexts: Int
    /// Most texts one Embed call may carry (bulk work belongs on EmbedStream).
    public var maxTextsPerRequest: Int
    /// Assignments a worker holds at once: one running, the others queued at the worker so it
    /// never idles between batches.
    public var assignmentsPerWorker: Int
    /// A worker silent (no message at all) for this long is dropped and its batches re-queued.
    public var heartbeatTimeout: Duration
    /// Times a batch may be assigned before its call fails (a batch that kills every worker).
    public var maxAttempts: Int
    /// Retry hint sent with RESOURCE_EXHAUSTED and UNAVAILABLE.
    public var retryAfterMs: UInt32
    /// Checks options against the model before a call is accepted, when the coordinator has the
    /// model at hand (`condense serve`); a standalone coordinator leaves those checks to the workers,
    /// which fail the items instead.
    public var modelOptionCheck: (@Sendable (EmbedOptions?) async throws -> Void)?

    public init(
        batchTexts: Int = 64, maxQueuedTexts: Int = 16_384, streamWindowTexts: Int = 1024,
        maxTextsPerRequest: Int = 2048, assignmentsPerWorker: Int = 2, heartbeatTimeout: Duration = .seconds(15),
        maxAttempts: Int = 3, retryAfterMs: UInt32 = 1000, modelOptionCheck: (@Sendable (EmbedOptions?) async throws -> Void)? = nil
    ) {
        self.batchTexts = max(1, batchTexts)
        self.maxQueuedTexts = max(1, maxQueuedTexts)
        self.streamWindowTexts = max(1, streamWindowTexts)
        self.maxTextsPerRequest = max(1, maxTextsPerRequest)
        self.assignmentsPerWorker = max(1, assignmentsPerWorker)
        self.heartbeatTimeout = heartbeatTimeout
        self.maxAttempts = max(1, maxAttempts)
        self.retryAfterMs = retryAfterMs
        self.modelOptionCheck = modelOptionCheck
    }
}
