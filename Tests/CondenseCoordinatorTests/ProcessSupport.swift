import CondenseClient
import CondenseRPC
import CondenseWire
import Foundation
import Testing

/// The built `condense` executable: `$CONDENSE_BINARY`, else next to the test bundle (both live
/// in the build's bin directory, `swift build --show-bin-path`).
let condenseBinary: String? = {
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
final class ChildProcess {
    let process: Process

    /// Starts `binary`; its standard error is appended to `stderr` (a restarted process keeps one log).
    init(_ binary: String, _ arguments: [String], stderr: URL) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        if !FileManager.default.fileExists(atPath: stderr.path) {
            _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
        }
        let log = try FileHandle(forWritingTo: stderr)
        try log.seekToEnd()
        process.standardError = log
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    var pid: pid_t { process.processIdentifier }

    func signal(_ number: Int32) { kill(pid, number) }

    /// SIGKILL, then waits until the process is gone (its sockets closed by the kernel).
    func killAndWait() {
        signal(SIGKILL)
        process.waitUntilExit()
    }

    func stop() {
        // A stopped process acts on SIGTERM only once continued.
        if process.isRunning {
            signal(SIGCONT)
            process.terminate()
        }
        process.waitUntilExit()
    }
}

/// A coordinator and its workers as separate `condense` processes on loopback, with their logs and
/// the coordinator's state in a scratch directory. `stop()` ends every process and removes the directory.
final class ProcessCluster {
    let binary: String
    let scratch: URL
    var stateDirectory: URL { scratch.appendingPathComponent("state") }
    var coordinatorLog: URL { scratch.appendingPathComponent("coordinator.log") }
    /// Stays the same across `restartCoordinator()`, so the workers' reconnect loop finds the new process.
    private(set) var port = 0
    private(set) var coordinator: ChildProcess?
    private var workers: [ChildProcess] = []
    private let heartbeatTimeout: Int

    /// Starts the coordinator on a free port. A long `heartbeatTimeout` (seconds) makes sure that a
    /// killed or frozen worker is lost through its closed connection, not through silence.
    init(binary: String, heartbeatTimeout: Int = 120) async throws {
        self.binary = binary
        self.heartbeatTimeout = heartbeatTimeout
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("condense-proc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        do {
            try await startCoordinator(listen: "127.0.0.1:0")
        } catch {
            stop()
            throw error
        }
    }

    @discardableResult
    func startEmbeddingWorker(_ id: String) throws -> ChildProcess {
        try startWorker(["worker", "embed"], id: id)
    }

    /// A training worker with a scratch directory of its own (checkpoints before upload).
    @discardableResult
    func startTrainingWorker(_ id: String) throws -> ChildProcess {
        try startWorker(["worker", "train", "--work-dir", scratch.appendingPathComponent("work-\(id)").path], id: id)
    }

    /// SIGKILLs the coordinator and starts a new one on the same port and state directory.
    func restartCoordinator() async throws {
        coordinator?.killAndWait()
        try await startCoordinator(listen: "127.0.0.1:\(port)")
    }

    func client() -> CondenseClient {
        CondenseClient(host: "127.0.0.1", port: port, timeout: .seconds(60), logger: quietLogger)
    }

    func log(of name: String) throws -> String {
        try String(contentsOf: scratch.appendingPathComponent("\(name).log"), encoding: .utf8)
    }

    /// Waits (up to 60 s: workers load the model first) until the coordinator logged a line containing all of `parts`.
    func waitForCoordinatorLog(_ parts: String...) async throws {
        for _ in 0..<600 {
            let log = (try? String(contentsOf: coordinatorLog, encoding: .utf8)) ?? ""
            if log.split(separator: "\n").contains(where: { line in parts.allSatisfy { line.contains($0) } }) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("the coordinator logged no line with \(parts):\n\((try? String(contentsOf: coordinatorLog, encoding: .utf8)) ?? "")")
    }

    /// Polls Health until its detail starts with `detail` (up to 60 s).
    func waitForHealth(_ client: CondenseClient, detail: String) async throws {
        var last = ""
        for _ in 0..<600 {
            do {
                let health = try await client.health()
                if health.detail.hasPrefix(detail + ":") { return }  // "2 embedding workers: model.gguf"
                last = health.detail
            } catch {
                // Only while the coordinator (re)starts. (A typed or conditional catch here sends swiftc 6.3 into a loop.)
                guard error.code == .unavailable else { throw error }
                last = "\(error)"
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("health is '\(last)', expected '\(detail)'")
    }

    func stop() {
        for worker in workers.reversed() { worker.stop() }
        coordinator?.stop()
        try? FileManager.default.removeItem(at: scratch)
    }

    private func startWorker(_ command: [String], id: String) throws -> ChildProcess {
        let worker = try ChildProcess(
            binary, command + ["--coordinator", "127.0.0.1:\(port)", "--model", Fixtures.tinyLlama, "--worker-id", id],
            stderr: scratch.appendingPathComponent("\(id).log"))
        workers.append(worker)
        return worker
    }

    private func startCoordinator(listen: String) async throws {
        let process = try ChildProcess(
            binary,
            ["coordinator", "--listen", listen, "--state", stateDirectory.path, "--heartbeat-timeout", "\(heartbeatTimeout)"],
            stderr: coordinatorLog)
        coordinator = process
        port = try await boundPort(of: process)
    }

    /// Reads the bound port from `coordinator.json` once `process` has written it (up to 30 s); an
    /// older file, left by a killed coordinator, names another pid.
    private func boundPort(of process: ChildProcess) async throws -> Int {
        struct StateFile: Decodable {
            var listen: String
            var pid: Int32
        }
        let file = stateDirectory.appendingPathComponent("coordinator.json")
        for _ in 0..<600 {
            if let data = try? Data(contentsOf: file), let state = try? JSONDecoder().decode(StateFile.self, from: data),
               state.pid == process.pid, let colon = state.listen.lastIndex(of: ":"),
               let port = Int(state.listen[state.listen.index(after: colon)...]) {
                return port
            }
            guard process.process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw RPCError(code: .unavailable, message: "the coordinator wrote no \(file.path); log:\n\((try? log(of: "coordinator")) ?? "")")
    }
}
