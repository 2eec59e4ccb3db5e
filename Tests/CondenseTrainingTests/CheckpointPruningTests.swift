import Foundation
import Testing
@testable import CondenseTraining

/// `keepCheckpoints`: only the newest checkpoints stay, deleted only after a newer one is complete,
/// and both `--resume` and a hand-back checkpoint (`FineTuneRun.checkpoint()`) still resume bit for bit.
@Suite(.serialized)
struct CheckpointPruningTests {
    private func temporaryDirectory() throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("pruning-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }

    private func options(_ directory: String, keep: Int, every: Int = 1, resume: Bool = false) -> FineTuneOptions {
        var options = FineTuneRunTests.options(directory, steps: 6, resume: resume)
        options.checkpointEvery = every
        options.keepCheckpoints = keep
        return options
    }

    private func checkpoints(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("checkpoint-") || $0.hasPrefix(".") }.sorted()
    }

    @Test func onlyTheNewestCheckpointsStayAndResumeStillMatches() throws {
        let straight = try temporaryDirectory(), pruned = try temporaryDirectory()
        defer { for path in [straight, pruned] { try? FileManager.default.removeItem(atPath: path) } }
        let pairs = FineTuneRunTests.pairs(10)
        let full = try FineTuneRun(model: FineTuneRunTests.model, baseModel: "tiny-llama", pairs: pairs, options: options(straight, keep: 0))
        try full.run()
        #expect(try checkpoints(straight) == (1...6).map { "checkpoint-\($0)" }, "0 keeps all")

        let first = try FineTuneRun(model: FineTuneRunTests.model, baseModel: "tiny-llama", pairs: pairs, options: options(pruned, keep: 2))
        var seen: [[String]] = []
        try first.run(until: 4) { _ in seen.append((try? checkpoints(pruned)) ?? []) }
        // After each step's checkpoint: the new one and the one before it, never fewer once two exist.
        #expect(seen == [["checkpoint-1"], ["checkpoint-1", "checkpoint-2"], ["checkpoint-2", "checkpoint-3"], ["checkpoint-3", "checkpoint-4"]])

        let resumed = try FineTuneRun(
            model: FineTuneRunTests.model, baseModel: "tiny-llama", pairs: pairs, options: options(pruned, keep: 2, resume: true))
        #expect(resumed.resumedFrom == pruned + "/checkpoint-4")
        try resumed.run()
        #expect(try checkpoints(pruned) == ["checkpoint-5", "checkpoint-6"])
        #expect(resumed.trainer.adapter.parameters.map(\.bitPattern) == full.trainer.adapter.parameters.map(\.bitPattern))
        let a = try Data(contentsOf: URL(fileURLWithPath: straight + "/adapter_model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: pruned + "/adapter_model.safetensors"))
        #expect(a == b)
    }

    @Test func anOnDemandCheckpointHoldsTheStepReachedAndResumesFromIt() throws {
        let straight = try temporaryDirectory(), stopped = try temporaryDirectory()
        defer { for path in [straight, stopped] { try? FileManager.default.removeItem(atPath: path) } }
        let pairs = FineTuneRunTests.pairs(10)
        let full = try FineTuneRun(model: FineTuneRunTests.model, baseModel: "tiny-llama", pairs: pairs, options: options(straight, keep: 1, every: 0))
        try full.run()

        // Periodic checkpoints off: a run stopped after step 3 saves one on demand, once.
        let first = try FineTuneRun(model: FineTuneRunTests.model, baseModel: "tiny-llama", pairs: pairs, options: options(stopped, keep: 1, every: 0))
        #expect(try first.checkpoint() == nil, "nothing to save before the first step")
        try first.run(until: 3)
        #expect(try checkpoints(stopped).isEmpty)
        let saved = try first.checkpoint()
        #expect(saved == stopped + "/checkpoint-3")
        #expect(try first.checkpoint() == saved, "the same step is not written twice")

        let resumed = try FineTuneRun(
            model: FineTuneRunTests.model, baseModel: "tiny-llama", pairs: pairs, options: options(stopped, keep: 1, every: 0, resume: true))
        #expect(resumed.completedSteps == 3)
        try resumed.run()
        #expect(try checkpoints(stopped) == ["checkpoint-6"])
        #expect(resumed.trainer.adapter.parameters.map(\.bitPattern) == full.trainer.adapter.parameters.map(\.bitPattern))
    }
}
