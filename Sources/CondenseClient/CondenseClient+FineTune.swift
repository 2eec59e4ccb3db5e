import CondenseRPC
import CondenseWire
import Foundation

/// FineTuneService: jobs, their events, and the adapters they produce (served by `condense coordinator`).
extension CondenseClient {
    /// Pair uploads are cut into messages of about this many bytes of text, far below the frame limit.
    public static let pairChunkBytes = 1 << 20

    /// Submits a job. With `spec.pairsPath` empty, `pairs` are uploaded after the spec (in messages of
    /// about `pairChunkBytes`); with it set, the server reads that file and `pairs` must be empty.
    /// Returns the new job (normally QUEUED). INVALID_ARGUMENT for a bad spec or pairs,
    /// ALREADY_EXISTS for a taken `spec.adapterID`.
    public func createFineTuneJob(spec: FineTuneJobSpec, pairs: [TrainingPair] = []) async throws(CondenseClientError) -> FineTuneJob {
        try await withConnection { client in
            try await client.clientStreaming(
                Methods.FineTuneService.createFineTuneJob.path, requestType: CreateFineTuneJobRequest.self,
                responseType: FineTuneJob.self
            ) { writer in
                try await writer.write(CreateFineTuneJobRequest(kind: .spec(spec)))
                var chunk: [TrainingPair] = []
                var chunkBytes = 0
                for pair in pairs {
                    chunk.append(pair)
                    chunkBytes += pair.text.utf8.count + pair.positive.utf8.count
                    guard chunkBytes >= Self.pairChunkBytes else { continue }
                    try await writer.write(CreateFineTuneJobRequest(kind: .pairs(PairChunk(pairs: chunk))))
                    chunk.removeAll(keepingCapacity: true)
                    chunkBytes = 0
                }
                if !chunk.isEmpty { try await writer.write(CreateFineTuneJobRequest(kind: .pairs(PairChunk(pairs: chunk)))) }
            }
        }
    }

    /// The job's events with `sequence` > `after` (0: from its first event), then live ones as they
    /// happen; the stream ends after the terminal event (`finished`, `failed` or `cancelled`).
    ///
    /// When the stream is lost (UNAVAILABLE: connection closed, server restarting), it reconnects and
    /// resumes after the last event delivered, so every event arrives once and in order; it gives up
    /// with the last error after `watchRetry.maxAttempts` failed tries in a row. Other failures
    /// (NOT_FOUND for an unknown job, ...) end the stream with their `CondenseClientError`.
    /// Ending the iteration early cancels the call.
    public func watchJob(_ jobID: String, after sequence: UInt64 = 0) -> AsyncThrowingStream<JobEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream<JobEvent, any Error>.makeStream()
        let policy = watchRetry
        let watch = Task {
            var last = sequence
            var failures = 0
            while true {
                do throws(CondenseClientError) {
                    let ended = try await withConnection { client in
                        try await client.serverStreaming(
                            Methods.FineTuneService.watchJob.path, request: WatchJobRequest(jobID: jobID, afterSequence: last),
                            responseType: JobEvent.self
                        ) { events in
                            for try await event in events where event.sequence > last {
                                last = event.sequence
                                failures = 0
                                continuation.yield(event)
                                if event.isTerminal { return true }
                            }
                            return false
                        }
                    }
                    guard !ended else { break }
                    throw CondenseClientError(code: .unavailable, message: "the watch stream of \(jobID) ended before the job did")
                } catch {
                    guard error.code == .unavailable, failures < policy.maxAttempts else {
                        continuation.finish(throwing: error)
                        return
                    }
                    failures += 1
                    do { try await Task.sleep(for: policy.backoff(attempt: failures, hint: error.retryAfter)) } catch {
                        continuation.finish(throwing: CondenseClientError(error))
                        return
                    }
                }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in watch.cancel() }
        return stream
    }

    /// The job's current state. NOT_FOUND for an unknown id.
    public func getJob(_ jobID: String) async throws(CondenseClientError) -> FineTuneJob {
        try await unary(Methods.FineTuneService.getJob, GetJobRequest(jobID: jobID))
    }

    /// Jobs newest first; `states` empty = every state, `limit` 0 = all.
    public func listJobs(states: [JobState] = [], limit: Int = 0) async throws(CondenseClientError) -> [FineTuneJob] {
        let response: ListJobsResponse = try await unary(
            Methods.FineTuneService.listJobs, ListJobsRequest(states: states, limit: UInt32(clamping: max(0, limit))))
        return response.jobs
    }

    /// Cancels a job that has not ended; returns it (CANCELLED, or its terminal state when it had
    /// already ended). NOT_FOUND for an unknown id.
    public func cancelJob(_ jobID: String, reason: String = "") async throws(CondenseClientError) -> FineTuneJob {
        try await unary(Methods.FineTuneService.cancelJob, CancelJobRequest(jobID: jobID, reason: reason))
    }

    /// The server's adapters, newest first.
    public func listAdapters() async throws(CondenseClientError) -> [Adapter] {
        let response: ListAdaptersResponse = try await unary(Methods.FineTuneService.listAdapters, ListAdaptersRequest())
        return response.adapters
    }

    /// One adapter's description. NOT_FOUND for an unknown id.
    public func getAdapter(_ adapterID: String) async throws(CondenseClientError) -> Adapter {
        try await unary(Methods.FineTuneService.getAdapter, GetAdapterRequest(adapterID: adapterID))
    }

    /// Downloads the adapter's PEFT directory (adapter_config.json, adapter_model.safetensors,
    /// condense_recipe.json) into `directory`, created when missing; files of the same name are
    /// replaced. Files appear only once the whole download arrived intact (DATA_LOSS otherwise).
    /// Returns the file names written. NOT_FOUND for an unknown id.
    @discardableResult
    public func downloadAdapter(_ adapterID: String, to directory: String) async throws(CondenseClientError) -> [String] {
        let parent = (directory as NSString).deletingLastPathComponent
        let staging = ((parent.isEmpty ? "." : parent) as NSString).appendingPathComponent(".condense-download-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: staging) }
        var receiver: FileTransfer.Receiver
        do { receiver = try FileTransfer.Receiver(directory: staging) } catch { throw CondenseClientError(error) }
        let files = try await withConnection { client in
            try await client.serverStreaming(
                Methods.FineTuneService.downloadAdapter.path, request: DownloadAdapterRequest(adapterID: adapterID),
                responseType: FileChunk.self
            ) { chunks in
                for try await chunk in chunks { try receiver.receive(chunk) }
                try receiver.finish()
                return receiver.files
            }
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for name in files {
                let destination = (directory as NSString).appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: destination) { try FileManager.default.removeItem(atPath: destination) }
                try FileManager.default.moveItem(atPath: (staging as NSString).appendingPathComponent(name), toPath: destination)
            }
        } catch {
            throw CondenseClientError(code: .internal, message: "cannot write adapter \(adapterID) into \(directory): \(error.localizedDescription)")
        }
        return files
    }
}

extension JobEvent {
    /// `finished`, `failed` or `cancelled`: the job's last event.
    var isTerminal: Bool {
        switch kind {
        case .finished, .failed, .cancelled: true
        case .queued, .started, .step, .checkpoint, nil: false
        }
    }
}
