import ArgumentParser
import CondenseClient
import CondenseTraining
import CondenseWire
import Foundation

/// `condense finetune`: local training by default (`condense finetune --pairs X --out DIR`), or jobs
/// on a coordinator (`submit`, `watch`, `get`, `cancel`, `list`).
struct FinetuneGroupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune LoRA adapters with a contrastive loss: locally, or as jobs on a coordinator.",
        subcommands: [
            FinetuneCommand.self, FinetuneSubmitCommand.self, FinetuneWatchCommand.self, FinetuneGetCommand.self,
            FinetuneCancelCommand.self, FinetuneListCommand.self,
        ],
        defaultSubcommand: FinetuneCommand.self)
}

struct FinetuneSubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Submit a fine-tuning job to a coordinator; the job id is the last line on stdout.",
        discussion: """
            The pairs of --pairs are read here and uploaded with the job; --server-pairs names a CSV file \
            the server reads itself. Training settings left out take the server's defaults. Follow the job \
            with `condense finetune watch`.
            """)

    @OptionGroup var serverOptions: ServerOptions
    @Option(help: "Training pairs to upload: .csv (text,text_aug; header optional) or .jsonl ({\"text\": ..., \"text_aug\": ...}).")
    var pairs: String?
    @Option(help: "Training pairs in a CSV file on the server (header text,text_aug), instead of --pairs.")
    var serverPairs: String?
    @Option(help: "Job name, free text.")
    var name = ""
    @Option(help: "Id of the resulting adapter. (default: the job id)")
    var adapterId = ""
    @Option(help: "Base model id. (default: the server's model)")
    var baseModel = ""
    @OptionGroup var hyperparameters: FineTuneHyperparameterOptions

    func run() async throws {
        let spec = FineTuneJobSpec(
            name: name, baseModel: baseModel, hyperparameters: try hyperparameters.wireHyperparameters(),
            pairsPath: serverPairs ?? "", adapterID: adapterId)
        let uploaded = try readPairs()
        let job = try await withServer(try serverOptions.client()) { client in
            try await client.createFineTuneJob(spec: spec, pairs: uploaded)
        }
        report("job \(job.jobID): \(stateName(job.state)), \(job.pairCount) pairs, \(job.totalSteps) steps")
        print(job.jobID)
        if job.state == .failed { throw CLIFailure("job \(job.jobID) failed: \(job.error)") }
    }

    private func readPairs() throws -> [CondenseWire.TrainingPair] {
        switch (pairs, serverPairs) {
        case (nil, nil): throw CLIFailure("give --pairs FILE (uploaded) or --server-pairs PATH (read by the server)")
        case (.some, .some): throw CLIFailure("give --pairs or --server-pairs, not both")
        case (nil, .some): return []
        case (.some(let path), nil):
            let file: PairsFile
            do { file = try PairsFile.read(path: path) } catch { throw CLIFailure("\(error)") }
            let skipped = file.skippedEmptyRows > 0 ? " (\(file.skippedEmptyRows) rows skipped: empty side)" : ""
            report("uploading \(file.pairs.count) pairs from \(path)\(skipped)")
            return file.pairs.map { CondenseWire.TrainingPair(text: $0.text, positive: $0.positive) }
        }
    }
}

struct FinetuneWatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Follow a job's events until it ends; exit 0 only when it succeeded.",
        discussion: """
            Prints one line per event (sequence, kind, details), then the final state on its own line: \
            succeeded, failed: REASON, or cancelled. A lost connection is re-established and the events \
            resume where they stopped. Exit status: 0 succeeded, 1 failed (or an error), 2 cancelled.
            """)

    @OptionGroup var serverOptions: ServerOptions
    @Argument(help: "Job id.")
    var job: String

    func run() async throws {
        var terminal: JobEvent.Kind?
        try await withServer(try serverOptions.client()) { client in
            for try await event in client.watchJob(job) {
                printLive(Self.line(event))
                terminal = event.kind
            }
        }
        switch terminal {
        case .finished:
            printLive("succeeded")
        case .failed(let failed):
            printLive("failed: \(failed.reason)")
            throw ExitCode(1)
        case .cancelled:
            printLive("cancelled")
            throw ExitCode(2)
        default:
            // The client's watch ends only after the terminal event or with an error.
            throw CLIFailure("the events of \(job) ended before the job did")
        }
    }

    static func line(_ event: JobEvent) -> String {
        let details: String = switch event.kind {
        case .queued(let queued): "queued  position \(queued.queuePosition)" + (queued.reason.isEmpty ? "" : "  \(queued.reason)")
        case .started(let started):
            "started  worker \(started.workerID)" + (started.resumedFromStep > 0 ? "  resumed after step \(started.resumedFromStep)" : "")
        case .step(let step):
            String(format: "step %u/%u  loss %.4f  lr %.2e  %.1f pairs/s", step.step, step.totalSteps, step.loss,
                   Double(step.learningRate), Double(step.pairsPerSecond))
                + "  ETA " + formatDuration(seconds: Double(step.etaSeconds))
        case .checkpoint(let checkpoint): "checkpoint  step \(checkpoint.step)  id \(checkpoint.checkpointID)"
        case .finished(let finished): "finished  adapter \(finished.adapterID)  final loss \(String(format: "%.4f", finished.finalLoss))"
        case .failed(let failed): "failed  \(failed.reason)"
        case .cancelled(let cancelled): cancelled.reason.isEmpty ? "cancelled" : "cancelled  \(cancelled.reason)"
        case nil: "unknown event"
        }
        return "\(event.sequence)  \(details)"
    }
}

struct FinetuneGetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Print a job's state and progress.")

    @OptionGroup var serverOptions: ServerOptions
    @Argument(help: "Job id.")
    var job: String

    func run() async throws {
        let found = try await withServer(try serverOptions.client()) { client in try await client.getJob(job) }
        var lines = [
            "job: \(found.jobID)", "state: \(stateName(found.state))", "name: \(found.spec?.name ?? "")",
            "pairs: \(found.pairCount)", "step: \(found.step)/\(found.totalSteps)",
        ]
        if found.step > 0 { lines.append("loss: \(String(format: "%.4f", found.lastLoss))") }
        if !found.workerID.isEmpty { lines.append("worker: \(found.workerID)") }
        if !found.adapterID.isEmpty { lines.append("adapter: \(found.adapterID)") }
        if !found.error.isEmpty { lines.append("error: \(found.error)") }
        lines.append("created: \(timestamp(found.createdUnixMs))")
        if found.startedUnixMs > 0 { lines.append("started: \(timestamp(found.startedUnixMs))") }
        if found.finishedUnixMs > 0 { lines.append("finished: \(timestamp(found.finishedUnixMs))") }
        lines.append("last event: \(found.lastSequence)")
        print(lines.joined(separator: "\n"))
    }
}

struct FinetuneCancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel", abstract: "Cancel a job; prints the state it ended in (a finished job stays as it was).")

    @OptionGroup var serverOptions: ServerOptions
    @Option(help: "Reason, recorded in the job's cancelled event.")
    var reason = ""
    @Argument(help: "Job id.")
    var job: String

    func run() async throws {
        let cancelled = try await withServer(try serverOptions.client()) { client in try await client.cancelJob(job, reason: reason) }
        print("\(cancelled.jobID) \(stateName(cancelled.state))")
    }
}

struct FinetuneListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List jobs, newest first: id, state, step/total, last loss, adapter, name.")

    @OptionGroup var serverOptions: ServerOptions
    @Option(help: "Only jobs in this state (repeatable): validating, queued, running, succeeded, failed, cancelled.")
    var state: [String] = []
    @Option(help: "At most this many jobs (0: all).")
    var limit = 0

    func run() async throws {
        let states = try state.map { name in
            guard let state = JobState.allCases.first(where: { stateName($0) == name }), state != .unspecified else {
                throw CLIFailure("unknown state '\(name)' (use validating, queued, running, succeeded, failed or cancelled)")
            }
            return state
        }
        let jobs = try await withServer(try serverOptions.client()) { client in try await client.listJobs(states: states, limit: limit) }
        for job in jobs {
            let loss = job.step > 0 ? String(format: "%.4f", job.lastLoss) : "-"
            print([job.jobID, stateName(job.state), "\(job.step)/\(job.totalSteps)", loss,
                   job.adapterID.isEmpty ? "-" : job.adapterID, job.spec?.name ?? ""].joined(separator: "\t"))
        }
    }
}

/// `queued`, `running`, ...
func stateName(_ state: JobState) -> String {
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

/// Milliseconds since the epoch as ISO 8601 UTC.
func timestamp(_ unixMs: Int64) -> String {
    ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(unixMs) / 1000))
}

/// A line on stdout at once (`print` buffers when stdout is a pipe).
private func printLive(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

private func report(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
