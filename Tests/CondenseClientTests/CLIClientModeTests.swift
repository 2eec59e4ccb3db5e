import CondenseCoordinator
import CondenseEmbedding
import CondenseWire
import Foundation
import Testing

/// The built `condense` executable: `$CONDENSE_BINARY`, else next to the test bundle (both live
/// in the build's bin directory, `swift build --show-bin-path`).
private let condenseBinary: String? = {
    if let path = ProcessInfo.processInfo.environment["CONDENSE_BINARY"] {
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }
    let runner = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
    for directory in [runner.deletingLastPathComponent(), Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()] {
        let candidate = directory.appendingPathComponent("condense").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}()

/// `condense` run as a child process; its stdout is kept (small outputs only: the pipe is read at exit).
private final class CLIRun {
    private let process = Process()
    private let stdout = Pipe()

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: try #require(condenseBinary))
        process.arguments = arguments
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// Waits (up to 60 s) for the exit; returns the exit status and the stdout lines.
    func finish() async throws -> (status: Int32, lines: [String]) {
        for _ in 0..<6000 where process.isRunning { try await Task.sleep(for: .milliseconds(10)) }
        if process.isRunning {
            process.terminate()
            Issue.record("condense \(process.arguments?.joined(separator: " ") ?? "") did not exit")
        }
        process.waitUntilExit()
        let output = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (process.terminationStatus, output.split(separator: "\n").map(String.init))
    }
}

extension ClientSuites {
    @Suite(
        "condense CLI client modes against a coordinator on loopback",
        .enabled(if: condenseBinary != nil, "the condense executable was not found next to the tests (set CONDENSE_BINARY)"))
    struct CLIClientModeTests {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("condense-cli-\(UUID().uuidString)")

        @Test func submitPrintsTheJobIDLastAndWatchExitsWithTheOutcome() async throws {
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            let pairsFile = scratch.appendingPathComponent("pairs.csv")
            try Data("text,text_aug\n\"a, quoted\",first positive\nsecond,second positive\nthird,third positive\n".utf8).write(to: pairsFile)
            let cluster = try await TestCluster.start()
            let server = "127.0.0.1:\(cluster.port)"

            let submit = try CLIRun(["finetune", "submit", "--server", server, "--pairs", pairsFile.path, "--steps", "2", "--batch", "3",
                                     "--rank", "8", "--targets", "q,v_proj", "--checkpoint-every", "1", "--name", "cli"])
            let submitted = try await submit.finish()
            #expect(submitted.status == 0)
            #expect(submitted.lines.last == "ft-0001")
            let worker = try await ScriptedTrainingWorker(port: cluster.port, id: "trainer-1")
            let assignment = try await worker.nextAssignment()
            #expect(assignment.pairs.map(\.text) == ["a, quoted", "second", "third"])
            #expect(assignment.spec?.name == "cli")
            #expect(assignment.spec?.hyperparameters == Hyperparameters(
                duration: .steps(2), batchSize: 3, loraRank: 8, targetModules: ["q_proj", "v_proj"], checkpointEvery: 1))

            let watch = try CLIRun(["finetune", "watch", "--server", server, "ft-0001"])
            worker.send(.started(JobStarted(workerID: "trainer-1")), job: "ft-0001")
            worker.send(.step(StepMetrics(step: 1, totalSteps: 2, loss: 2.5, learningRate: 1e-5, pairsPerSecond: 3, etaSeconds: 70)), job: "ft-0001")
            let final = try await worker.upload(job: "ft-0001", step: 2, final: true, files: CondenseClientTests.adapterFiles)
            worker.send(.finished(JobFinished(adapterID: final.checkpointID, finalLoss: 1.25)), job: "ft-0001")
            let watched = try await watch.finish()
            #expect(watched.status == 0)
            #expect(watched.lines == [
                "1  queued  position 0", "2  started  worker trainer-1",
                "3  step 1/2  loss 2.5000  lr 1.00e-05  3.0 pairs/s  ETA 1m10s",
                "4  finished  adapter ft-0001  final loss 1.2500", "succeeded",
            ])

            let adapterDirectory = scratch.appendingPathComponent("adapter").path
            let download = try await CLIRun(["adapters", "download", "--server", server, "ft-0001", "--out", adapterDirectory]).finish()
            #expect(download.status == 0)
            for (name, bytes) in CondenseClientTests.adapterFiles {
                #expect(FileManager.default.contents(atPath: (adapterDirectory as NSString).appendingPathComponent(name)).map(Array.init) == bytes)
            }

            // A cancelled job: watch ends with "cancelled" and a non-zero status.
            let second = try await CLIRun(["finetune", "submit", "--server", server, "--pairs", pairsFile.path, "--batch", "3"]).finish()
            let job = try #require(second.lines.last)
            let watchCancelled = try CLIRun(["finetune", "watch", "--server", server, job])
            let cancel = try await CLIRun(["finetune", "cancel", "--server", server, "--reason", "stop", job]).finish()
            #expect(cancel.lines == ["\(job) cancelled"])
            let cancelled = try await watchCancelled.finish()
            #expect(cancelled.status == 2)
            #expect(cancelled.lines.suffix(2) == ["2  cancelled  stop", "cancelled"])
            let list = try await CLIRun(["finetune", "list", "--server", server, "--state", "cancelled"]).finish()
            #expect(list.lines.map { $0.split(separator: "\t").first.map(String.init) } == [job])
            #expect(try await CLIRun(["finetune", "get", "--server", server, "ft-0099"]).finish().status != 0)

            await worker.kill()
            try await cluster.stop()
        }

        @Test(.enabled(if: Fixtures.tinyEmbedder != nil, "tiny-llama fixture missing"))
        func embedWithServerWritesWhatTheLocalModelComputes() async throws {
            let embedder = try #require(Fixtures.tinyEmbedder)
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            var texts = Fixtures.texts(40)
            texts[7] = ""
            let input = scratch.appendingPathComponent("texts.txt")
            try Data(texts.joined(separator: "\n").utf8).write(to: input)
            // Unnormalized, as local mode's default: the CLI does not take the protocol's default (normalized).
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 16, normalize: false)
            let cluster = try await TestCluster.start(settings: CoordinatorSettings(batchTexts: 16))
            let worker = cluster.startWorker("w1", embedder: embedder)
            try await cluster.waitForWorkers(1)

            for format in ["jsonl", "npy"] {
                let output = scratch.appendingPathComponent("out.\(format)")
                let run = try await CLIRun(["embed", "--server", "127.0.0.1:\(cluster.port)", "--input", input.path, "--output", output.path]).finish()
                #expect(run.status != 0, "one text failed, so the exit status is non-zero")
                let reference = format == "jsonl"
                    ? EmbeddingFiles.jsonLines(expected) : EmbeddingFiles.npy(expected, dimensions: embedder.dimensions)
                #expect(FileManager.default.contents(atPath: output.path).map(Array.init) == reference, "\(format) output differs")
            }

            worker.cancel()
            try await cluster.stop()
        }
    }
}
