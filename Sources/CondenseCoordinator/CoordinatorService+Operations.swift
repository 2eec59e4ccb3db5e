import CondenseRPC
import CondenseWire

/// What the coordinator's operations port reports (`OperationsServer`).
extension CoordinatorService {
    /// Ready to take work once an embedding worker is registered: before that every Embed call
    /// fails with UNAVAILABLE.
    public func readiness() async -> Readiness {
        if gate.isClosed { return .notReady("shutting down") }
        return await scheduler.registeredWorkerCount > 0 ? .ready : .notReady("no embedding workers registered")
    }

    /// Workers, queues, embedded texts and tokens, and (with a state directory) jobs by state, read now.
    public func collectMetrics() async -> [MetricFamily] {
        let embedding = await scheduler.statistics
        let trainingWorkers = await fineTune?.trainingWorkerCount ?? 0
        var families: [MetricFamily] = [
            .gauge(
                "condense_coordinator_workers", help: "Workers with a registered session, by kind.", by: "kind",
                [("embed", Double(embedding.registeredWorkers)), ("train", Double(trainingWorkers))]),
            .gauge(
                "condense_coordinator_queued_texts", help: "Texts accepted from clients and not yet delivered back, over all calls.",
                Double(embedding.queuedTexts)),
            .gauge(
                "condense_coordinator_queued_batches", help: "Embedding batches waiting for a worker.",
                Double(embedding.queuedBatches)),
            .gauge(
                "condense_coordinator_in_flight_batches", help: "Embedding batches assigned to a worker and not yet answered.",
                Double(embedding.inFlightBatches)),
            .counter(
                "condense_coordinator_embedded_texts_total", help: "Texts whose result reached their call.",
                Double(embedding.embeddedTexts)),
            .counter(
                "condense_coordinator_embedded_tokens_total",
                help: "Tokens the workers ran through the model for delivered batches, prompts included; its rate is tokens per second.",
                Double(embedding.embeddedTokens)),
        ]
        guard let fineTune else { return families }
        families.append(.gauge(
            "condense_coordinator_queued_jobs", help: "Fine-tuning jobs waiting for a training worker.",
            Double(await fineTune.queuedJobCount)))
        // A failing store read drops this family from the scrape rather than failing the whole scrape.
        if let counts = try? await fineTune.store.jobCounts() {
            let states = JobState.allCases.filter { $0 != .unspecified }
            families.append(.gauge(
                "condense_coordinator_jobs", help: "Fine-tuning jobs in the job store, by state.", by: "state",
                states.map { (Self.label($0), Double(counts[$0] ?? 0)) }))
        }
        return families
    }

    private static func label(_ state: JobState) -> String {
        switch state {
        case .unspecified: "unspecified"
        case .validating: "validating"
        case .queued: "queued"
        case .running: "running"
        case .succeeded: "succeeded"
        case .failed: "failed"
        case .cancelled: "cancelled"
        }
    }
}
