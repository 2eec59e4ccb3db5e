import ArgumentParser
import CondenseEmbedding
import Foundation

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Embed the texts of a file with a local model.",
        discussion: """
            Writes .jsonl ({"index": i, "embedding": [...]} per line, input order; failed items carry \
            "error" instead) or .npy (float32, shape (texts, dimensions); failed items are rows of NaN). \
            Exits non-zero when any item failed.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Prompt name (\(PromptTemplate.namedPromptNames.joined(separator: ", "))) or a template containing {text} once.")
    var prompt = "none"
    @Option(help: "Pooling: \(Pooling.allCases.map(\.rawValue).joined(separator: ", ")).")
    var pooling = Pooling.mean.rawValue
    @Flag(help: "L2-normalize the vectors.")
    var normalize = false
    @Flag(help: "Pool only over the text's own tokens (mean and weighted-mean).")
    var excludePrompt = false
    @Option(help: "Keep only the first D dimensions (re-normalized with --normalize).")
    var dimensions: Int?
    @Option(help: "Token limit of each raw text, before the prompt is added.")
    var maxTokens = EmbeddingOptions.defaultMaxTokens
    @Option(help: "Texts over --max-tokens: truncate or reject.")
    var truncation = TruncationPolicy.truncate.rawValue
    @Option(help: "Most tokens per forward batch.")
    var tokenBudget = Embedder.defaultTokenBudget
    @Option(help: "Input texts: .txt (one per line), .jsonl (\"text\" field) or .csv (\"text\" column).")
    var input: String
    @Option(help: "Output file: .jsonl or .npy.")
    var output: String

    enum OutputFormat { case jsonl, npy }

    func run() throws {
        let format = try outputFormat()
        let options = try embeddingOptions()
        let texts: [String]
        do { texts = try TextInput.readTexts(path: input) } catch { throw CLIFailure("\(error)") }
        let embedder: Embedder
        do { embedder = try Embedder.load(modelPath: modelOptions.model, tokenBudget: tokenBudget) } catch {
            throw CLIFailure("\(error)")
        }
        do { try embedder.validate(options) } catch { throw CLIFailure("\(error)") }

        let progress = ProgressReporter(total: texts.count, unit: "texts")
        let results: [Result<EmbeddedText, EmbeddingError>]
        do {
            results = try embedder.embedDetailed(texts, options: options, progress: { progress.update(finished: $0) })
        } catch { throw CLIFailure("\(error)") }
        let tokens = results.reduce(0) { sum, result in sum + ((try? result.get().tokenCount) ?? 0) }
        let failed = results.filter { if case .failure = $0 { true } else { false } }.count
        progress.finish(alsoCounted: [(tokens, "tokens")], note: failed > 0 ? "\(failed) failed" : nil)

        let width = options.dimensions ?? embedder.dimensions
        let bytes = switch format {
        case .jsonl: EmbeddingFiles.jsonLines(results.map { $0.map(\.vector) })
        case .npy: EmbeddingFiles.npy(results.map { $0.map(\.vector) }, dimensions: width)
        }
        do { try Data(bytes).write(to: URL(fileURLWithPath: output), options: .atomic) } catch {
            throw CLIFailure("cannot write \(output): \(error.localizedDescription)")
        }

        let failures = results.enumerated().compactMap { index, result -> String? in
            if case .failure(let error) = result { "text \(index): \(error)" } else { nil }
        }
        guard failures.isEmpty else {
            let shown = failures.prefix(10).joined(separator: "\n")
            let more = failures.count > 10 ? "\n... and \(failures.count - 10) more" : ""
            throw CLIFailure("\(failures.count) of \(texts.count) texts failed:\n\(shown)\(more)")
        }
    }

    private func outputFormat() throws -> OutputFormat {
        switch (output as NSString).pathExtension.lowercased() {
        case "jsonl": .jsonl
        case "npy": .npy
        default: throw CLIFailure("\(output): unsupported output format (use .jsonl or .npy)")
        }
    }

    private func embeddingOptions() throws -> EmbeddingOptions {
        guard let pooling = Pooling(rawValue: pooling) else {
            throw CLIFailure("unknown pooling '\(pooling)' (use \(Pooling.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let truncation = TruncationPolicy(rawValue: truncation) else {
            throw CLIFailure("unknown truncation '\(truncation)' (use truncate or reject)")
        }
        let template: PromptTemplate
        do { template = try PromptTemplate(nameOrTemplate: prompt) } catch { throw CLIFailure("\(error)") }
        return EmbeddingOptions(
            prompt: template, pooling: pooling, normalize: normalize, excludePrompt: excludePrompt,
            dimensions: dimensions, maxTokens: maxTokens, truncation: truncation)
    }
}
