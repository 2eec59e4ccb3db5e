import ArgumentParser
import CondenseEmbedding
import CondenseModel
import CondenseTraining
import Foundation

struct FinetuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local",
        abstract: "Fine-tune LoRA adapters with a contrastive (InfoNCE) loss on text pairs, locally.",
        discussion: """
            Each step takes a batch of pairs; every other pair's positive is a negative, so no text occurs \
            twice in a batch (a conflicting pair moves to a later batch). Texts are prompted, truncated \
            and pooled exactly as `condense embed` does with the same --prompt/--pooling/--max-tokens.

            Writes OUT/checkpoint-STEP/ every --checkpoint-every steps and at the end (PEFT adapter, \
            condense_recipe.json, optimizer and trainer state), OUT/training_log.jsonl (one line per step), \
            and the final adapter in OUT itself (load it with --adapter OUT). --resume continues from the \
            newest complete checkpoint with identical results. Only the newest --keep-checkpoints \
            checkpoints stay (each is about 207 MiB at rank 64 on SmolLM2-135M); older ones are deleted once \
            a newer one is complete.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Training pairs: .csv (text,text_aug; header optional) or .jsonl ({\"text\": ..., \"text_aug\": ...}).")
    var pairs: String
    @OptionGroup var hyperparameters: FineTuneHyperparameterOptions
    @Option(help: "Most tokens per forward/backward pass (gradient caching above it): about 0.8 MB of activations per token on SmolLM2-135M at rank 64.")
    var microBatch = FineTuneOptions.defaultMicroBatchTokens
    @Flag(help: "Pool only over the text's own tokens (mean and weighted-mean).")
    var excludePrompt = false
    @Option(help: "Probability of deleting each word of a positive (text_aug side only; 0 = off).")
    var augmentDelete: Double = 0
    @Option(help: "Probability of swapping each word of a positive with the next one (text_aug side only; 0 = off).")
    var augmentSwap: Double = 0
    @Option(help: "Probability of noise on each character of a positive: delete, replace, insert or swap (text_aug side only; 0 = off).")
    var augmentChar: Double = 0
    @Option(help: "Output directory: checkpoints, training log, final adapter.")
    var out: String
    @Flag(help: "Continue from the newest complete checkpoint in --out (the settings must match).")
    var resume = false
    @Option(help: "Checkpoints kept in --out: older ones are deleted once a newer one is complete (0 = keep all).")
    var keepCheckpoints = 2

    func run() throws {
        let options = try fineTuneOptions()
        let file: PairsFile
        do { file = try PairsFile.read(path: pairs) } catch { throw CLIFailure("\(error)") }
        let skipped = file.skippedEmptyRows > 0 ? " (\(file.skippedEmptyRows) rows skipped: empty side)" : ""
        report("\(file.pairs.count) pairs from \(pairs)\(skipped)")

        let model: LoadedModel
        do { model = try ModelLoader.load(path: modelOptions.model) } catch { throw CLIFailure("\(error)") }
        let baseModel = URL(fileURLWithPath: modelOptions.model).lastPathComponent
        do {
            let run = try FineTuneRun(model: model, baseModel: baseModel, pairs: file.pairs, skippedPairs: file.skippedEmptyRows,
                                      options: options)
            if let checkpoint = run.resumedFrom { report("resuming from \(checkpoint) at step \(run.completedSteps)/\(run.totalSteps)") }
            let progress = StepProgress()
            try run.run { progress.update($0) }
            progress.finish()
            report("adapter written to \(out) after \(run.completedSteps) steps")
        } catch { throw CLIFailure("\(error)") }
    }

    private func fineTuneOptions() throws -> FineTuneOptions {
        guard keepCheckpoints >= 0 else { throw CLIFailure("--keep-checkpoints must be 0 (keep all) or positive") }
        let settings = hyperparameters
        typealias Default = FineTuneHyperparameterOptions.LocalDefault
        let pooling = try settings.parsedPooling() ?? .mean
        let template: PromptTemplate
        do { template = try settings.parsedPrompt() ?? PromptTemplate(nameOrTemplate: Default.prompt) } catch {
            throw CLIFailure("\(error)")
        }
        let training = TrainingConfiguration(
            lora: LoRAConfiguration(rank: settings.rank ?? Default.rank, alpha: settings.alpha ?? Default.alpha,
                                    dropout: settings.dropout ?? Default.dropout,
                                    targets: try settings.parsedTargets() ?? LoRATarget.defaultTargets),
            learningRate: settings.lr ?? Default.learningRate, warmupSteps: settings.warmup ?? Default.warmup,
            temperature: settings.temperature ?? Default.temperature, margin: settings.margin ?? 0, pooling: pooling,
            microBatchTokens: microBatch, seed: settings.seed ?? Default.seed)
        return FineTuneOptions(
            training: training,
            embedding: EmbeddingOptions(prompt: template, pooling: pooling, normalize: settings.normalize ?? true,
                                        excludePrompt: excludePrompt, maxTokens: settings.maxTokens ?? FineTuneOptions.defaultMaxTokens),
            batchSize: settings.batch ?? FineTuneOptions.defaultBatchSize, steps: settings.steps, epochs: settings.epochs,
            augmentation: NoiseAugmentation(wordDeletion: augmentDelete, wordSwap: augmentSwap, characterNoise: augmentChar),
            checkpointEvery: settings.checkpointEvery ?? Default.checkpointEvery, keepCheckpoints: keepCheckpoints,
            outputDirectory: out, resume: resume)
    }

    private func report(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// The per-step line on stderr: step/total, loss, learning rate, pairs/s, ETA; redrawn in place on a
/// terminal, one plain line per step otherwise (logs, CI). Steps take seconds, so every one is shown.
private final class StepProgress {
    private let interactive = isatty(STDERR_FILENO) != 0
    private var drawn = false

    func update(_ progress: FineTuneProgress) {
        var line = String(format: "step %d/%d  loss %.4f  lr %.2e  %.1f pairs/s", progress.step, progress.totalSteps,
                          progress.loss, Double(progress.learningRate), progress.pairsPerSecond)
            + "  ETA " + Self.duration(progress.secondsRemaining)
        if let checkpoint = progress.checkpoint { line += "  saved \((checkpoint as NSString).lastPathComponent)" }
        write(interactive ? "\r" + line + "\u{1B}[K" : line + "\n")
        drawn = interactive
    }

    func finish() {
        if drawn { write("\n") }
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    private static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded())
        if whole >= 3600 { return "\(whole / 3600)h\(String(format: "%02d", whole / 60 % 60))m" }
        return whole >= 60 ? "\(whole / 60)m\(String(format: "%02d", whole % 60))s" : "\(whole)s"
    }
}
