import CondenseClient
import CondenseWire
import Foundation
import Testing

extension CoordinatorSuites {
    @Suite(
        "Fine-tuning through coordinator and worker processes",
        .enabled(if: condenseBinary != nil, "the condense executable was not found next to the tests (set CONDENSE_BINARY)"),
        .enabled(if: TrainingFixtures.model != nil, "tiny-llama fixture missing"))
    struct ProcessFineTuneTests {
        /// The in-process resume test's job (40 steps, a checkpoint every 2) and its uninterrupted local adapter.
        static let spec = TrainingWorkerTests.spec
        static let pairs = TrainingFixtures.pairs.map { TrainingPair(text: $0.text, positive: $0.positive) }

        @Test(.timeLimit(.minutes(10))) func aKilledTrainingWorkerProcessIsReplacedAndTheJobResumesFromItsCheckpoint() async throws {
            let binary = try #require(condenseBinary)
            let expected = try TrainingWorkerTests.localAdapter()
            let cluster = try await ProcessCluster(binary: binary)
            defer { cluster.stop() }
            let first = try cluster.startTrainingWorker("t1")
            try await cluster.waitForCoordinatorLog("training worker registered", "worker=t1")
            let client = cluster.client()
            let job = try await client.createFineTuneJob(spec: Self.spec, pairs: Self.pairs)

            // One watch over the whole job: t1 dies at the first checkpoint event, t2 takes over.
            var events: [JobEvent] = []
            var killedAfter: UInt32?
            for try await event in client.watchJob(job.jobID) {
                events.append(event)
                if killedAfter == nil, case .checkpoint(let checkpoint) = event.kind {
                    first.killAndWait()
                    killedAfter = checkpoint.step
                    try cluster.startTrainingWorker("t2")
                }
            }
            #expect(first.process.terminationReason == .uncaughtSignal)
            #expect(events.map(\.sequence) == events.indices.map { UInt64($0 + 1) })
            let killStep = try #require(killedAfter, "no checkpoint event before the job ended")
            let resumed = try expectResumed(events, on: "t2", fromCheckpointAtOrAfter: killStep)
            #expect(resumed < job.totalSteps, "t1 had finished before it was killed")

            let adapterID = try expectFinished(events)
            #expect(try await client.getJob(job.jobID).state == .succeeded)
            let downloaded = cluster.scratch.appendingPathComponent("downloaded")
            try await client.downloadAdapter(adapterID, to: downloaded.path)
            let weights = try Data(contentsOf: downloaded.appendingPathComponent("adapter_model.safetensors"))
            #expect([UInt8](weights) == expected, "interrupted + resumed in another process = uninterrupted local run")
            await client.close()
        }

        @Test(.timeLimit(.minutes(10))) func aCoordinatorRestartedMidJobLosesNothing() async throws {
            let binary = try #require(condenseBinary)
            let expected = try TrainingWorkerTests.localAdapter()
            let cluster = try await ProcessCluster(binary: binary)
            defer { cluster.stop() }
            try cluster.startTrainingWorker("t1")
            try cluster.startEmbeddingWorker("e1")
            // Retries often enough to outlast the coordinator's restart (its state opens in well under a second).
            let client = CondenseClient(
                host: "127.0.0.1", port: cluster.port, timeout: .seconds(60),
                watchRetry: .init(maxAttempts: 50, initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(500)),
                logger: quietLogger)
            try await cluster.waitForHealth(client, detail: "1 embedding worker")
            try await cluster.waitForCoordinatorLog("training worker registered", "worker=t1")
            let job = try await client.createFineTuneJob(spec: Self.spec, pairs: Self.pairs)

            // The watch outlives the coordinator: it reconnects to the new process and resumes after its cursor.
            var watched: [JobEvent] = []
            var restartedAfter: UInt32?
            for try await event in client.watchJob(job.jobID) {
                watched.append(event)
                if restartedAfter == nil, case .checkpoint(let checkpoint) = event.kind {
                    try await cluster.restartCoordinator()
                    restartedAfter = checkpoint.step
                }
            }
            let restartStep = try #require(restartedAfter, "no checkpoint event before the job ended")

            // Replayed from cursor 0 by the new process: every event, numbered without a gap, as watched live.
            var replayed: [JobEvent] = []
            for try await event in client.watchJob(job.jobID) { replayed.append(event) }
            #expect(replayed.map(\.sequence) == replayed.indices.map { UInt64($0 + 1) })
            #expect(replayed == watched)
            #expect(replayed.filter { if case .queued = $0.kind { true } else { false } }.count == 2, "re-queued once at the restart")
            try expectResumed(replayed, on: "t1", fromCheckpointAtOrAfter: restartStep)

            let adapterID = try expectFinished(replayed)
            #expect(try await client.getJob(job.jobID).state == .succeeded)
            #expect(try await client.listAdapters().map(\.adapterID) == [adapterID])
            let downloaded = cluster.scratch.appendingPathComponent("downloaded")
            try await client.downloadAdapter(adapterID, to: downloaded.path)
            let weights = try Data(contentsOf: downloaded.appendingPathComponent("adapter_model.safetensors"))
            #expect([UInt8](weights) == expected, "a job resumed after a coordinator restart = uninterrupted local run")

            // The embedding worker found the new coordinator too, and serves the new adapter.
            try await cluster.waitForHealth(client, detail: "1 embedding worker")
            let tuned = try await client.embed(Fixtures.texts(3), options: EmbedOptions(adapterID: adapterID))
            #expect(tuned.model.hasSuffix("+\(adapterID)"))
            #expect(try tuned.vectors().count == 3)
            await client.close()
        }

        /// Checks that after the last interruption the job started again on `worker` from the newest
        /// checkpoint it had recorded (at or after `step`, where the interruption came), and that the
        /// steps went on from there; returns the step it resumed from.
        @discardableResult
        private func expectResumed(_ events: [JobEvent], on worker: String, fromCheckpointAtOrAfter step: UInt32) throws -> UInt32 {
            let resumedAt = try #require(events.lastIndex { event in
                if case .started(let started) = event.kind { started.resumedFromStep > 0 } else { false }
            }, "the job never resumed from a checkpoint")
            guard case .started(let started) = events[resumedAt].kind else { return 0 }
            #expect(started.workerID == worker)
            let newestCheckpoint = events[..<resumedAt].compactMap { event -> UInt32? in
                if case .checkpoint(let checkpoint) = event.kind { checkpoint.step } else { nil }
            }.last
            #expect(started.resumedFromStep == newestCheckpoint, "resumed from the newest recorded checkpoint")
            #expect(started.resumedFromStep >= step)
            let firstStepAfter = events[resumedAt...].lazy.compactMap { event -> UInt32? in
                if case .step(let metrics) = event.kind { metrics.step } else { nil }
            }.first
            #expect(firstStepAfter == started.resumedFromStep + 1)
            return started.resumedFromStep
        }

        /// The adapter id of the job's `finished` event, which must be its last.
        private func expectFinished(_ events: [JobEvent]) throws -> String {
            let finished = events.last.flatMap { event -> JobFinished? in
                if case .finished(let finished) = event.kind { finished } else { nil }
            }
            return try #require(finished, "the job did not finish: \(String(describing: events.last))").adapterID
        }
    }
}
