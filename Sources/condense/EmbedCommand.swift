import ArgumentParser
import CondenseEmbedding
import Foundation

struct EmbedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Embed the texts of a file with a local model, or on a server.",
        discussion: """
            Writes .jsonl ({"index": i, "embedding": [...]} per line, input order; failed items carry \
            "error" instead) or .npy (float32, shape (texts, dimensions); failed items are rows of NaN). \
            Exits non-zero when any item failed.

            With --server the texts stream through the server's EmbedStream (`condense serve` or \
            `condense coordinator`): --adapter then names an adapter id on the server, --model and \
            --token-budget do not apply, and options left out take the server's defaults (and the adapter's recipe).
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var adapterOptions: AdapterOptions
    // Optional so that an adapter's recipe can supply the settings left out (the defaults are in the help).
    @Option(help: "Prompt name (\(PromptTemplate.namedPromptNames.joined(separator: ", "))) or a template containing {text} once. (default: none)")
    var prompt: String?
    @Option(help: "Pooling: \(Pooling.allCases.map(\.rawValue).joined(separator: ", ")). (default: mean)")
    var pooling: String?
    @Flag(inversion: .prefixedNo, help: "L2-normalize the vectors.")
    var normalize: Bool?
    @Flag(inversion: .prefixedNo, help: "Pool only over the text's own tokens (mean and weighted-mean).")
    var excludePrompt: Bool?
    @Option(help: "Keep only the first D dimensions (re-normalized with --normalize).")
    var dimensions: Int?
    @Option(help: "Token limit of each raw text, before the prompt is added. (default: \(EmbeddingOptions.defaultMaxTokens))")
    var maxTokens: Int?
    @Option(help: "Texts over --max-tokens: truncate or reject.")
    var truncation = TruncationPolicy.truncate.rawValue
    @Option(help: "Most tokens per forward batch.")
    var tokenBudget = Embedder.defaultTokenBudget
    @Option(help: "Input texts: .txt (one per line), .jsonl (\"text\" field) or .csv (\"text\" column).")
    var input: String
    @Option(help: "Output file: .jsonl or .npy.")
    var output: String
    @Option(help: "Embed on this server (HOST:PORT) instead of with a local model.")
    var server: HostPort?
    @Option(help: "File holding the server's shared secret (with --server).")
    var authTokenFile: String?
    @OptionGroup var tls: ClientTLSOptions

    enum OutputFormat { case jsonl, npy }

    func run() async throws {
        if let server { return try await embedOnServer(server) }
        let format = try outputFormat()
        let options = try embeddingOptions()
        let texts: [String]
        do { texts = try TextInput.readTexts(path: input) } catch { throw CLIFailure("\(error)") }
        let embedder = try adapterOptions.loadEmbedder(modelPath: modelOptions.model, tokenBudget: tokenBudget)
        do { try embedder.validate(options) } catch { throw CLIFailure("\(error)") }

        let progress = ProgressReporter(total: texts.count, unit: "texts")
        let results: [Result<EmbeddedText, EmbeddingError>]
        do {
            results = try embedder.embedDetailed(texts, options: options, progress: { progress.update(finished: $0) })
        } catch { throw CLIFailure("\(error)") }
        let tokens = results.reduce(0) { sum, result in sum + ((try? result.get().tokenCount) ?? 0) }
        let failed = results.filter { if case .failure = $0 { true } else { false } }.count
        progress.finish(alsoCounted: [(tokens, "tokens")], note: failed > 0 ? "\(failed) failed" : nil)
        try write(results.map { $0.map(\.vector) }, format: format, dimensions: options.dimensions ?? embedder.dimensions)
    }

    /// Writes the output file, then fails (after writing) when any item failed.
    func write(_ results: [Result<[Float], some Error & CustomStringConvertible>], format: OutputFormat, dimensions: Int) throws {
        let bytes = switch format {
        case .jsonl: EmbeddingFiles.jsonLines(describing: results)
        case .npy: EmbeddingFiles.npy(results, dimensions: dimensions)
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
            throw CLIFailure("\(failures.count) of \(results.count) texts failed:\n\(shown)\(more)")
        }
    }

    func outputFormat() throws -> OutputFormat {
        switch (output as NSString).pathExtension.lowercased() {
        case "jsonl": .jsonl
        case "npy": .npy
        default: throw CLIFailure("\(output): unsupported output format (use .jsonl or .npy)")
        }
    }

    private func embeddingOptions() throws -> EmbeddingOptions {
        let givenPooling = try pooling.map { name in
            guard let pooling = Pooling(rawValue: name) else {
                throw CLIFailure("unknown pooling '\(name)' (use \(Pooling.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return pooling
        }
        guard let truncation = TruncationPolicy(rawValue: truncation) else {
            throw CLIFailure("unknown truncation '\(truncation)' (use truncate or reject)")
        }
        let givenTemplate: PromptTemplate?
        do { givenTemplate = try prompt.map { name throws(EmbeddingError) in try PromptTemplate(nameOrTemplate: name) } } catch {
            throw CLIFailure("\(error)")
        }
        var settings = try adapterOptions.recipeDefaults()
        let options = EmbeddingOptions(
            prompt: settings.pick(givenTemplate, from: { $0.prompt }, default: .none, describe: { "prompt \($0.label)" }),
            pooling: settings.pick(givenPooling, from: { $0.pooling }, default: .mean, describe: { "pooling \($0.rawValue)" }),
            normalize: settings.pick(normalize, from: { $0.normalize }, default: false, describe: { $0 ? "--normalize" : "--no-normalize" }),
            excludePrompt: settings.pick(
                excludePrompt, from: { $0.excludePrompt }, default: false, describe: { $0 ? "--exclude-prompt" : "--no-exclude-prompt" }),
            dimensions: dimensions,
            maxTokens: settings.pick(maxTokens, from: { $0.maxTokens }, default: EmbeddingOptions.defaultMaxTokens,
                                     describe: { "max tokens \($0)" }),
            truncation: truncation)
        settings.announce()
        return options
    }
}
