import ArgumentParser
import CondenseModel
import CondenseTokenizer
import Foundation

struct PairsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pairs",
        abstract: "Positive pairs for contrastive fine-tuning.",
        subcommands: [PairsGenerateCommand.self])
}

struct PairsGenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Synthesize positive pairs: an instruct model paraphrases each input sentence.",
        discussion: """
            Prompts the model in its own chat template (from the model file) with the instruction and one \
            sentence, samples the answer (temperature, top-p; KV-cached), keeps its first line without \
            wrapping quotes, and writes `text,text_aug` CSV rows. Empty answers and answers identical to the \
            input (ignoring case and whitespace) are dropped and counted. Rerunning with the same output and \
            settings resumes an interrupted run (OUTPUT.progress records how far it got); sampling is seeded \
            per sentence, so the result equals an uninterrupted run.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Input sentences: .txt (one per line), .jsonl (\"text\" field) or .csv (\"text\" column); blank ones are skipped.")
    var input: String
    @Option(help: "Output CSV (text,text_aug); resumed if it exists.")
    var output: String
    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0.7
    @Option(help: "Nucleus (top-p) mass in (0, 1].")
    var topP: Float = 0.9
    @Option(help: "Most tokens generated per sentence.")
    var maxNewTokens = 64
    @Option(help: "Random seed (each sentence samples from its own stream of it).")
    var seed: UInt64 = 0
    @Option(help: "The instruction put before each sentence in the user message.")
    var instruction = ParaphraseSettings.defaultInstruction
    @Option(help: "Use only the first N input sentences.")
    var limit: Int?

    func validate() throws {
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be >= 0") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard maxNewTokens > 0 else { throw ValidationError("--max-new-tokens must be positive") }
        if let limit, limit < 0 { throw ValidationError("--limit must be >= 0") }
        guard !instruction.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ValidationError("--instruction must not be empty")
        }
    }

    func run() throws {
        let sentences: [String]
        do {
            sentences = try TextInput.readTexts(path: input)
                .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        } catch { throw CLIFailure("\(error)") }
        let total = min(sentences.count, limit ?? sentences.count)

        let settings = ParaphraseSettings(
            instruction: instruction, temperature: temperature, topP: topP, maxNewTokens: maxNewTokens, seed: seed)
        let synthesizer = try makeSynthesizer(settings: settings)
        let recorded = settings.recorded.merging(
            ["model": URL(fileURLWithPath: modelOptions.model).standardizedFileURL.path]) { $1 }
        let pairs: PairsOutputFile
        do { pairs = try PairsOutputFile(path: output, settings: recorded) } catch { throw CLIFailure("\(error)") }
        let start = min(pairs.consumedInputs, total)
        if start > 0 {
            FileHandle.standardError.write(Data("resuming \(output): \(start) of \(total) sentences done, \(pairs.rowCount) rows\n".utf8))
        }

        let progress = ProgressReporter(total: total - start, unit: "sentences")
        var generatedTokens = 0, kept = 0, empty = 0, identical = 0
        do {
            for index in start..<total {
                let (outcome, tokens) = try synthesizer.paraphrase(sentences[index], index: index)
                generatedTokens += tokens
                switch outcome {
                case .paraphrase(let text):
                    try pairs.append(text: sentences[index], augmented: text)
                    kept += 1
                case .empty:
                    try pairs.skip()
                    empty += 1
                case .identical:
                    try pairs.skip()
                    identical += 1
                }
                progress.update(finished: index - start + 1)
            }
        } catch { throw CLIFailure("\(error)") }
        progress.finish(
            alsoCounted: [(generatedTokens, "generated tokens")],
            note: "\(kept) pairs written, filtered out \(empty) empty and \(identical) identical; \(pairs.rowCount) rows in \(output)")
    }

    private func makeSynthesizer(settings: ParaphraseSettings) throws -> PairSynthesizer {
        do {
            let template = try ChatTemplate.load(modelPath: modelOptions.model)
            let loaded = try ModelLoader.load(path: modelOptions.model)
            let tokenizer = try Tokenizer(spec: loaded.tokenizer)
            let generator = try TextGenerator(weights: loaded.weights)
            return try PairSynthesizer(generator: generator, tokenizer: tokenizer, template: template, settings: settings)
        } catch {
            throw CLIFailure("\(error)")
        }
    }
}
