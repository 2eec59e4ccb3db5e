import CondenseCoordinator
import CondenseRPC
import CondenseWire
import Foundation
import Testing

extension CoordinatorSuites {
    @Suite("The coordinator keeps only a job's newest checkpoints")
    struct JobCheckpointPruningTests {
        let stateDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("condense-pruning-\(UUID().uuidString)").path

        func stored(_ job: String) throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: stateDirectory + "/checkpoints").filter { $0.hasPrefix(job) }.sorted()
        }

        @Test func olderCheckpointsGoOnceANewerOneIsRecordedAndTheJobResumesFromTheNewest() async throws {
            let fineTune = try FineTuneCoordinator(stateDirectory: stateDirectory, keepCheckpoints: 2, logger: quietLogger)
            let cluster = try await TestCluster.start(fineTune: fineTune)
            let client = try await cluster.client()
            let spec = FineTuneJobSpec(name: "prune", hyperparameters: Hyperparameters(duration: .steps(10), batchSize: 4, checkpointEvery: 2))
            let job: FineTuneJob = try await client.clientStreaming(
                Methods.FineTuneService.createFineTuneJob.path, requestType: CreateFineTuneJobRequest.self
            ) { writer in
                try await writer.write(CreateFineTuneJobRequest(kind: .spec(spec)))
                try await writer.write(CreateFineTuneJobRequest(kind: .pairs(PairChunk(
                    pairs: (0..<8).map { TrainingPair(text: "text \($0)", positive: "positive \($0)") }))))
            }
            let worker = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-1")
            _ = try await worker.nextAssignment()
            worker.send(.started(JobStarted()), job: job.jobID)
            var ids: [String] = []
            for step in [2, 4, 6] as [UInt32] {
                let stored = try await worker.upload(job: job.jobID, step: step, final: false, files: ["state.json": Array("\(step)".utf8)])
                // Uploaded but not yet recorded: it is kept, and so is the job's resume point (the newest
                // recorded one). A prune still running for the previous record may already count it, so
                // at most one older checkpoint is gone by now.
                let present = try self.stored(job.jobID)
                #expect(present.contains(stored.checkpointID))
                if let resumePoint = ids.last { #expect(present.contains(resumePoint)) }
                #expect((min(ids.count + 1, 2)...min(ids.count + 1, 3)).contains(present.count))
                worker.send(.checkpoint(CheckpointSaved(step: step, checkpointID: stored.checkpointID)), job: job.jobID)
                ids.append(stored.checkpointID)
                // Recorded: the newest two stay.
                for _ in 0..<500 where try self.stored(job.jobID) != ids.suffix(2).sorted() { try await Task.sleep(for: .milliseconds(10)) }
                #expect(try self.stored(job.jobID) == ids.suffix(2).sorted())
            }

            // The worker dies: the next one resumes from the newest checkpoint, which is still there.
            await worker.kill()
            let next = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-2")
            let (_, resumed) = try await next.nextAssignment()
            #expect(resumed.resumeStep == 6)
            #expect(resumed.resumeCheckpointID == ids.last)
            let files = try await next.client.serverStreaming(
                Methods.WorkerService.fetchAdapter.path, request: FetchAdapterRequest(artifact: .checkpointID(resumed.resumeCheckpointID)),
                responseType: FileChunk.self
            ) { chunks in
                var data: [UInt8] = []
                for try await chunk in chunks { data += chunk.data }
                return data
            }
            #expect(files == Array("6".utf8))
            await next.kill()
            await client.close()
            try await cluster.stop()
        }
    }
}
