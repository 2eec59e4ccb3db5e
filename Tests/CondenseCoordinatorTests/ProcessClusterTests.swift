import CondenseEmbedding
import CondenseRPC
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

/// A child process that is terminated (if still running) when the test is done with it.
private final class ChildProcess {
    let process: Process
    let name: String

    init(_ binary: String, _ arguments: [String], name: String, stderr: URL) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: stderr)
        process.standardOutput = FileHandle.nullDevice
        self.name = name
        try process.run()
    }

    var pid: pid_t { process.processIdentifier }

    func signal(_ number: Int32) { kill(pid, number) }

    func stop() {
        // A stopped process acts on SIGTERM only once continued.
        if process.isRunning {
            kill(pid, SIGCONT)
            process.terminate()
        }
        process.waitUntilExit()
    }
}

extension CoordinatorSuites {
    @Suite(
        "Coordinator and workers as processes",
        .enabled(if: condenseBinary != nil, "the condense executable was not found next to the tests (set CONDENSE_BINARY)"),
        .enabled(if: Fixtures.tinyEmbedder != nil, "tiny-llama fixture missing"))
    struct ProcessClusterTests {
        @Test(.timeLimit(.minutes(10))) func killedWorkerMidStreamLosesNothing() async throws {
            let binary = try #require(condenseBinary)
            let embedder = try #require(Fixtures.tinyEmbedder)
            let texts = Fixtures.texts(2000)
            let expected = try localVectors(texts, embedder: embedder, batchTexts: 64)

            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("condense-coord-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            let state = scratch.appendingPathComponent("state")
            let coordinatorLog = scratch.appendingPathComponent("coordinator.log")

            // A long heartbeat timeout: the frozen worker must be lost through its killed connection.
            let coordinator = try ChildProcess(
                binary, ["coordinator", "--listen", "127.0.0.1:0", "--state", state.path, "--heartbeat-timeout", "120"],
                name: "coordinator", stderr: coordinatorLog)
            var children = [coordinator]
            defer { for child in children.reversed() { child.stop() } }
            let port = try await coordinatorPort(stateDirectory: state)

            for id in ["w1", "w2"] {
                children.append(try ChildProcess(
                    binary,
                    ["worker", "embed", "--coordinator", "127.0.0.1:\(port)", "--model", Fixtures.tinyLlama, "--worker-id", id],
                    name: id, stderr: scratch.appendingPathComponent("\(id).log")))
            }
            let victim = children[1]
            let victimPID = victim.pid
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, logger: quietLogger)
            try await waitForHealth(client, detail: "2 embedding workers")

            // Frozen, w1 keeps the batches it is given without answering; killed, it loses them.
            victim.signal(SIGSTOP)
            let unfinishedAtKill = try await client.bidirectional(
                Methods.EmbeddingService.embedStream.path, requestType: EmbedStreamRequest.self,
                responseType: EmbedStreamResponse.self,
                sendRequests: { writer in
                    for start in stride(from: 0, to: texts.count, by: 100) {
                        let end = min(start + 100, texts.count)
                        try await writer.write(EmbedStreamRequest(firstIndex: UInt64(start), texts: Array(texts[start..<end])))
                    }
                },
                handleResponses: { responses in
                    var results: [EmbeddingResult] = []
                    var unfinishedAtKill: Int?
                    for try await response in responses {
                        guard case .batch(let batch) = response.kind else { continue }
                        results += batch.results
                        // Everything but w1's (at most two) batches is done: kill it now.
                        if unfinishedAtKill == nil, results.count >= texts.count - 2 * 64 {
                            unfinishedAtKill = texts.count - results.count
                            kill(victimPID, SIGKILL)
                        }
                    }
                    expectMatches(results, expected)
                    return unfinishedAtKill
                })
            #expect(unfinishedAtKill.map { $0 > 0 } == true, "w1 held no batch when it was killed")
            victim.process.waitUntilExit()
            #expect(victim.process.terminationReason == .uncaughtSignal)

            // The coordinator re-queued what w1 held, and serves on with w2.
            try await waitForHealth(client, detail: "1 embedding worker")
            let log = try String(contentsOf: coordinatorLog, encoding: .utf8)
            let requeued = log.split(separator: "\n").filter { $0.contains("worker left") && $0.contains("worker=w1") }
                .compactMap { line in line.firstRange(of: "requeued_batches=").flatMap { Int(line[$0.upperBound...].prefix { $0.isNumber }) } }
            #expect(requeued.count == 1)
            #expect((requeued.first ?? 0) > 0, "coordinator log:\n\(log)")
            let stateFile = try Data(contentsOf: state.appendingPathComponent("coordinator.json"))
            #expect(String(decoding: stateFile, as: UTF8.self).contains("127.0.0.1:\(port)"))
            await client.close()
        }

        /// Reads the bound port from `coordinator.json` once the coordinator has written it (up to 30 s).
        private func coordinatorPort(stateDirectory: URL) async throws -> Int {
            struct StateFile: Decodable { var listen: String }
            let file = stateDirectory.appendingPathComponent("coordinator.json")
            for _ in 0..<600 {
                if let data = try? Data(contentsOf: file), let state = try? JSONDecoder().decode(StateFile.self, from: data),
                   let colon = state.listen.lastIndex(of: ":"), let port = Int(state.listen[state.listen.index(after: colon)...]) {
                    return port
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw RPCError(code: .unavailable, message: "the coordinator wrote no \(file.path)")
        }

        /// Polls Health until its detail is `detail` (up to 60 s: workers load the model first).
        private func waitForHealth(_ client: RPCClient, detail: String) async throws {
            var last = ""
            for _ in 0..<600 {
                let health: HealthResponse = try await client.unary(Methods.EmbeddingService.health.path, request: HealthRequest())
                if health.detail.hasPrefix(detail + ":") { return }  // "2 embedding workers: model.gguf"
                last = health.detail
                try await Task.sleep(for: .milliseconds(100))
            }
            Issue.record("health is '\(last)', expected '\(detail)'")
        }
    }
}
