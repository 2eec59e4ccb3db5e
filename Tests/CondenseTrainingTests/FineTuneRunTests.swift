import CondenseEmbedding
import CondenseModel
import Foundation
import Testing
@testable import CondenseTraining

/// Local fine-tuning runs on the tiny Llama fixture (vocabulary 300, hidden 32, 2 layers) with short texts.
@Suite(.serialized)
struct FineTuneRunTests {
    static let tinyLlama = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("CondenseModelTests/Fixtures/tiny-llama").path

    private static let subjects = ["the cat", "a dog", "my bank", "the river", "our team", "a bird", "the market", "his car"]
    private static let verbs = ["sleeps", "runs fast", "fell sharply", "is closed", "won again", "sings", "opens early", "broke down"]

    /// Distinct short sentences and a reworded positive of each.
    static func pairs(_ count: Int) -> [TextPair] {
        (0..<count).map { index in
            let subject = subjects[index % subjects.count], verb = verbs[(index / subjects.count + index) % verbs.count]
            return TextPair(text: "\(subject) \(verb) \(index)", positive: "\(verb) said \(subject) \(index)")
        }
    }

    static func options(_ directory: String, steps: Int? = 5, resume: Bool = false, learningRate: Float = 1e-2) -> FineTuneOptions {
        FineTuneOptions(
            training: TrainingConfiguration(
                lora: LoRAConfiguration(rank: 2, alpha: 4, dropout: 0.1), learningRate: learningRate, warmupSteps: 1,
                microBatchTokens: 48, seed: 3),
            embedding: EmbeddingOptions(prompt: try! PromptTemplate(nameOrTemplate: "Text: {text}"), pooling: .mean, maxTokens: 12),
            batchSize: 4, steps: steps, augmentation: NoiseAugmentation(wordDeletion: 0.1, wordSwap: 0.1, characterNoise: 0.05),
            checkpointEvery: 2, outputDirectory: directory, resume: resume)
    }

    static let model: LoadedModel = try! ModelLoader.load(path: tinyLlama)

    /// The error `body` throws, nil when it succeeds.
    static func error(_ body: () throws(FineTuneError) -> Void) -> FineTuneError? {
        do { try body() } catch { return error }
        return nil
    }

    private func temporaryDirectory() throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }

    private func logSteps(_ directory: String) throws -> [TrainingLog.Entry] {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try String(contentsOfFile: directory + "/training_log.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try decoder.decode(TrainingLog.Entry.self, from: Data($0.utf8)) }
    }

    @Test func resumedRunEqualsAnUninterruptedOneBitForBit() throws {
        let straight = try temporaryDirectory(), interrupted = try temporaryDirectory()
        defer { for path in [straight, interrupted] { try? FileManager.default.removeItem(atPath: path) } }
        let pairs = Self.pairs(10)

        let full = try FineTuneRun(model: Self.model, baseModel: "tiny-llama", pairs: pairs, options: Self.options(straight))
        try full.run()
        #expect(full.completedSteps == 5)

        // Stop after step 3: checkpoint-2 is the newest, so the resumed run redoes step 3 (epoch 0 has 3 batches:
        // the resumed steps also cross into epoch 1).
        let first = try FineTuneRun(model: Self.model, baseModel: "tiny-llama", pairs: pairs, options: Self.options(interrupted))
        try first.run(until: 3)
        #expect(first.completedSteps == 3)
        let resumed = try FineTuneRun(model: Self.model, baseModel: "tiny-llama", pairs: pairs,
                                      options: Self.options(interrupted, resume: true))
        #expect(resumed.resumedFrom == interrupted + "/checkpoint-2")
        #expect(resumed.completedSteps == 2)
        try resumed.run()

        #expect(resumed.trainer.adapter.parameters.map(\.bitPattern) == full.trainer.adapter.parameters.map(\.bitPattern))
        #expect(resumed.trainer.optimizer == full.trainer.optimizer)
        for file in ["adapter_model.safetensors", "adapter_config.json", "condense_recipe.json", "checkpoint-4/optimizer.safetensors"] {
            let a = try Data(contentsOf: URL(fileURLWithPath: straight + "/" + file))
            let b = try Data(contentsOf: URL(fileURLWithPath: interrupted + "/" + file))
            #expect(a == b, "\(file) differs")
        }
        // The log holds each step once; the redone step 3 replaced the interrupted run's.
        let straightLog = try logSteps(straight), resumedLog = try logSteps(interrupted)
        #expect(resumedLog.map(\.step) == [1, 2, 3, 4, 5])
        #expect(resumedLog.map(\.loss) == straightLog.map(\.loss))
        #expect(resumedLog.map(\.epoch) == [0, 0, 0, 1, 1])

        // The final adapter in OUT is a PEFT directory holding the trained parameters.
        let saved = try LoRAAdapter.readPEFT(from: straight, model: Self.model.weights.config)
        #expect(saved == full.trainer.adapter)
        #expect(try EmbeddingRecipe.read(fromDirectory: straight) == EmbeddingRecipe(options: full.options.embedding))
    }

    @Test func resumeRefusesOtherSettingsAndMissingCheckpoints() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let pairs = Self.pairs(8)
        #expect(throws: FineTuneError.nothingToResume(directory: directory)) {
            try FineTuneRun(model: Self.model, baseModel: "tiny-llama", pairs: pairs, options: Self.options(directory, resume: true))
        }
        try FineTuneRun(model: Self.model, baseModel: "tiny-llama", pairs: pairs, options: Self.options(directory, steps: 2)).run()
        #expect(throws: FineTuneError.outputInUse(directory: directory, checkpoint: "checkpoint-2")) {
            try FineTuneRun(model: Self.model, baseModel: "tiny-llama", pairs: pairs, options: Self.options(directory, steps: 2))
        }
        let mismatch = Self.error { () throws(FineTuneError) in
            _ = try FineTuneRun(model: Self.model, baseModel: "tiny-llama", pairs: pairs,
                                options: Self.options(directory, steps: 2, resume: true, learningRate: 1e-3))
        }
        #expect(mismatch == .resumeMismatch(checkpoint: directory + "/checkpoint-2", differences: ["learningRate: 0.01 → 0.001"]))
        // Same settings: nothing left to do, the run just rewrites the final adapter.
        let done = try FineTuneRun(model: Self.model, baseModel: "tiny-llama", pairs: pairs,
                                   options: Self.options(directory, steps: 2, resume: true))
        try done.run()
        #expect(done.completedSteps == 2)
    }

    @Test func unusableDataAndSettingsAreClearErrors() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: FineTuneError.notEnoughPairs(usable: 1, skipped: 3)) {
            try FineTuneRun(model: Self.model, baseModel: "m", pairs: Self.pairs(1), skippedPairs: 3, options: Self.options(directory))
        }
        #expect(throws: FineTuneError.batchLargerThanPairs(batch: 4, pairs: 3)) {
            try FineTuneRun(model: Self.model, baseModel: "m", pairs: Self.pairs(3), options: Self.options(directory))
        }
        var noisy = Self.options(directory)
        noisy.augmentation.characterNoise = 1.5
        #expect(throws: FineTuneError.invalidSetting("character noise probability 1.5 must be in [0, 1]")) {
            try FineTuneRun(model: Self.model, baseModel: "m", pairs: Self.pairs(8), options: noisy)
        }
    }

    @Test func trainingTextsArePreparedAsTheEmbedderPreparesThem() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var options = Self.options(directory)
        options.augmentation = .off
        options.embedding.excludePrompt = true
        let pairs = Self.pairs(4) + [TextPair(text: String(repeating: "long words here ", count: 20), positive: "short")]
        let run = try FineTuneRun(model: Self.model, baseModel: "m", pairs: pairs, options: options)
        let embedder = try Embedder.load(modelPath: Self.tinyLlama)
        let prepared = try run.prepare([4, 0], epoch: 0)
        for (pair, index) in zip(prepared, [4, 0]) {
            let text = try embedder.prepare(pairs[index].text, options: options.embedding)
            let positive = try embedder.prepare(pairs[index].positive, options: options.embedding)
            #expect(pair.text == TrainingText(tokens: text.tokens, pooledRows: text.textTokens))
            #expect(pair.positive == TrainingText(tokens: positive.tokens, pooledRows: positive.textTokens))
        }
        #expect(try embedder.prepare(pairs[4].text, options: options.embedding).truncated)
    }

    @Test func endToEndFromACSVFileLowersTheLossOnRepeatedBatches() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let csv = "text,text_aug\n" + Self.pairs(6).map { "\"\($0.text)\",\"\($0.positive)\"" }.joined(separator: "\n") + "\n , empty\n"
        let path = directory + "/pairs.csv"
        try Data(csv.utf8).write(to: URL(fileURLWithPath: path))
        let file = try PairsFile.read(path: path)
        #expect(file.pairs.count == 6 && file.skippedEmptyRows == 1)

        var options = Self.options(directory + "/out", steps: nil)
        options.epochs = 8   // one batch of all 6 pairs per epoch: the same batch, reshuffled
        options.batchSize = 6
        options.augmentation = .off
        options.training.lora.dropout = 0
        options.checkpointEvery = 0
        let run = try FineTuneRun(model: Self.model, baseModel: "tiny-llama", pairs: file.pairs, options: options)
        #expect(run.totalSteps == 8)
        var losses: [Double] = []
        try run.run { losses.append($0.loss) }
        #expect(losses.count == 8)
        #expect(losses[7] < losses[0] * 0.8, "losses \(losses)")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory + "/out").sorted()
        #expect(names == ["adapter_config.json", "adapter_model.safetensors", "checkpoint-8", "condense_recipe.json", "training_log.jsonl"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/out/checkpoint-8").sorted()
            == ["adapter_config.json", "adapter_model.safetensors", "condense_recipe.json", "optimizer.safetensors", "trainer_state.json"])
    }
}
