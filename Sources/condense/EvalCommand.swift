import ArgumentParser
import CondenseEmbedding
import CondenseEvaluation
import CondenseTensor
import Foundation

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate embeddings of a local model: clustering (MTEB protocol) and STS.",
        subcommands: [EvalClusteringCommand.self, EvalSTSCommand.self]
    )
}

/// Model, prompt and pooling choices shared by the evaluation commands.
struct EvalEmbeddingOptions: ParsableArguments {
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var adapterOptions: AdapterOptions
    // Optional so that an adapter's recipe can supply the settings left out (the defaults are in the help).
    @Option(help: "Prompt name (\(PromptTemplate.namedPromptNames.joined(separator: ", "))) or a template containing {text} once. (default: none)")
    var prompt: String?
    @Option(help: """
        Pooling: \(Pooling.allCases.map(\.rawValue).joined(separator: ", ")); a comma-separated list evaluates \
        each from one forward pass. (default: mean)
        """)
    var pooling: String?
    @Flag(inversion: .prefixedNo, help: "Pool only over the text's own tokens (mean and weighted-mean; one forward pass per pooling).")
    var excludePrompt: Bool?
    @Option(help: "Token limit of each raw text, before the prompt is added. (default: \(EmbeddingOptions.defaultMaxTokens))")
    var maxTokens: Int?
    @Option(help: "Most tokens per forward batch.")
    var tokenBudget = Embedder.defaultTokenBudget
    @Option(help: "Use only the first N items of each dataset (as MTEB's `limit`).")
    var limit: Int?

    /// The first `limit` elements (all without a limit).
    func limited<Element>(_ items: [Element]) throws -> [Element] {
        guard let limit else { return items }
        guard limit >= 1 else { throw CLIFailure("--limit must be at least 1") }
        return Array(items.prefix(limit))
    }

    /// The settings of this evaluation: each option when given, else the adapter's recipe, else the default.
    func settings() throws -> EvalSettings {
        var poolings: [Pooling]?
        if let pooling {
            var names: [Pooling] = []
            for name in pooling.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                guard let pooling = Pooling(rawValue: name) else {
                    throw CLIFailure("unknown pooling '\(name)' (use \(Pooling.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                if !names.contains(pooling) { names.append(pooling) }
            }
            guard !names.isEmpty else { throw CLIFailure("--pooling names no pooling") }
            poolings = names
        }
        var recipe = try adapterOptions.recipeDefaults()
        // Reports print the prompt as given; a recipe's prompt as its name, else its template.
        let promptText = recipe.pick(prompt, from: { $0.prompt.name ?? $0.prompt.template }, default: "none",
                                     describe: { "prompt \($0)" })
        let template: PromptTemplate
        do { template = try PromptTemplate(nameOrTemplate: promptText) } catch { throw CLIFailure("\(error)") }
        let settings = EvalSettings(
            promptText: promptText, prompt: template,
            poolings: recipe.pick(poolings, from: { [$0.pooling] }, default: [.mean], describe: { "pooling \($0.map(\.rawValue).joined(separator: ","))" }),
            excludePrompt: recipe.pick(
                excludePrompt, from: { $0.excludePrompt }, default: false, describe: { $0 ? "--exclude-prompt" : "--no-exclude-prompt" }),
            maxTokens: recipe.pick(maxTokens, from: { $0.maxTokens }, default: EmbeddingOptions.defaultMaxTokens,
                                   describe: { "max tokens \($0)" }))
        recipe.announce()
        return settings
    }

    func loadEmbedder() throws -> Embedder {
        try adapterOptions.loadEmbedder(modelPath: modelOptions.model, tokenBudget: tokenBudget)
    }

    /// One [texts x hidden] matrix per pooling, embeddings as produced (not normalized).
    func embed(_ texts: [String], with embedder: Embedder, settings: EvalSettings) throws -> [Matrix] {
        let (prompt, poolings, excludePrompt, maxTokens) = (settings.prompt, settings.poolings, settings.excludePrompt, settings.maxTokens)
        let progress = ProgressReporter(total: texts.count * (excludePrompt ? poolings.count : 1), unit: "texts")
        defer { progress.finish() }
        if !excludePrompt {
            do {
                return try SharedPassEmbedding.embed(
                    texts, embedder: embedder, prompt: prompt, poolings: poolings, maxTokens: maxTokens,
                    progress: { progress.update(finished: $0) })
            } catch { throw CLIFailure("\(error)") }
        }
        var matrices: [Matrix] = []
        for (round, pooling) in poolings.enumerated() {
            let options = EmbeddingOptions(prompt: prompt, pooling: pooling, excludePrompt: true, maxTokens: maxTokens)
            let results: [Result<[Float], EmbeddingError>]
            do {
                results = try embedder.embed(texts, options: options, progress: { progress.update(finished: round * texts.count + $0) })
            } catch { throw CLIFailure("\(error)") }
            var matrix = Matrix(zeros: texts.count, embedder.dimensions)
            for (row, result) in results.enumerated() {
                switch result {
                case .success(let vector):
                    for (column, value) in vector.enumerated() { matrix.data[row * matrix.cols + column] = value }
                case .failure(let error):
                    throw CLIFailure("text \(row) could not be embedded: \(error)")
                }
            }
            matrices.append(matrix)
        }
        return matrices
    }
}

/// Prompt, poolings and token limit of an evaluation run.
struct EvalSettings {
    /// The prompt as given (a name or a template), as reports print it.
    var promptText: String
    var prompt: PromptTemplate
    var poolings: [Pooling]
    var excludePrompt: Bool
    var maxTokens: Int
}

struct EvalClusteringCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clustering",
        abstract: "MTEB clustering protocol: mini-batch k-means (k = gold labels, batch 500) and V-measure.",
        discussion: """
            Each DATASET is JSON lines {"text": ..., "label": ...}. Embeddings are clustered as produced (no \
            normalisation) with mini-batch k-means, k = number of distinct gold labels, once per seed \
            0..<--seeds; the V-measure of each run against the gold labels gives a mean and a population \
            standard deviation per dataset. MTEB v1 instead runs once on each of 10 subsets of a dataset.
            """)

    @OptionGroup var embedding: EvalEmbeddingOptions
    @Option(help: "k-means runs (seeds 0..<N) per dataset.")
    var seeds = ClusteringProtocol.defaultSeeds.count
    @Flag(help: "Print JSON instead of a table.")
    var json = false
    @Argument(help: "Clustering datasets (.jsonl).")
    var datasets: [String]

    func run() throws {
        guard !datasets.isEmpty else { throw CLIFailure("no dataset given") }
        guard seeds >= 1 else { throw CLIFailure("--seeds must be at least 1") }
        let settings = try embedding.settings()
        var loaded: [ClusteringDataset] = []
        for path in datasets {
            let dataset: ClusteringDataset
            do { dataset = try ClusteringDataset.read(path: path) } catch { throw CLIFailure("\(error)") }
            loaded.append(ClusteringDataset(
                name: dataset.name, texts: try embedding.limited(dataset.texts), labels: try embedding.limited(dataset.labels)))
        }
        let embedder = try embedding.loadEmbedder()
        let matrices = try embedding.embed(loaded.flatMap(\.texts), with: embedder, settings: settings)

        var reports: [String] = []
        for (slot, pooling) in settings.poolings.enumerated() {
            var scores: [(name: String, score: ClusteringScore)] = []
            var firstRow = 0
            for dataset in loaded {
                let rows = dataset.texts.count
                let block = Matrix(
                    rows: rows, cols: matrices[slot].cols,
                    data: Array(matrices[slot].data[(firstRow * matrices[slot].cols)..<((firstRow + rows) * matrices[slot].cols)]))
                firstRow += rows
                do {
                    let score = try ClusteringProtocol.evaluate(
                        embeddings: block, labels: dataset.denseLabels, seeds: (0..<seeds).map { UInt64($0) })
                    scores.append((dataset.name, score))
                } catch { throw CLIFailure("\(dataset.name): \(error)") }
            }
            let average = scores.map(\.score.mean).reduce(0, +) / Double(scores.count)
            reports.append(json ? try jsonReport(prompt: settings.promptText, pooling: pooling, scores: scores, average: average)
                                : tableReport(prompt: settings.promptText, pooling: pooling, scores: scores, average: average))
        }
        print(reports.joined(separator: json ? "\n" : "\n\n"))
    }

    private func jsonReport(prompt: String, pooling: Pooling, scores: [(name: String, score: ClusteringScore)], average: Double) throws -> String {
        var datasets: [String: ClusteringJSON.Dataset] = [:]
        for (name, score) in scores {
            datasets[name] = .init(v_measure: score.mean, std: score.standardDeviation, n: score.items, k: score.clusters)
        }
        return try EvalJSON.line(ClusteringJSON(prompt: prompt, pooling: pooling.rawValue, datasets: datasets, average: average))
    }

    private func tableReport(prompt: String, pooling: Pooling, scores: [(name: String, score: ClusteringScore)], average: Double) -> String {
        var lines = ["prompt \(prompt), pooling \(pooling.rawValue): V-measure over \(seeds) k-means seeds"]
        lines.append("dataset".padding(toLength: 18, withPad: " ", startingAt: 0) + "     n     k   v_measure     std")
        for (name, score) in scores {
            lines.append(
                name.padding(toLength: 18, withPad: " ", startingAt: 0)
                    + String(format: "%6d %5d %11.4f %7.4f", score.items, score.clusters, score.mean, score.standardDeviation))
        }
        lines.append("average".padding(toLength: 18, withPad: " ", startingAt: 0) + String(format: "%24.4f", average))
        return lines.joined(separator: "\n")
    }
}

struct EvalSTSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sts",
        abstract: "Spearman correlation of cosine similarity against gold scores (STS-B TSV).",
        discussion: "FILE is a TSV with header score<TAB>sentence1<TAB>sentence2[<TAB>...], as STS-B.")

    @OptionGroup var embedding: EvalEmbeddingOptions
    @Flag(help: "Print JSON instead of text.")
    var json = false
    @Argument(help: "STS file (.tsv).")
    var file: String

    func run() throws {
        let settings = try embedding.settings()
        let pairs: [STSPair]
        do { pairs = try embedding.limited(STSDataset.read(path: file)) } catch let failure as CLIFailure {
            throw failure
        } catch { throw CLIFailure("\(error)") }
        let embedder = try embedding.loadEmbedder()
        let matrices = try embedding.embed(pairs.map(\.sentence1) + pairs.map(\.sentence2), with: embedder, settings: settings)
        let name = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
        var reports: [String] = []
        for (slot, pooling) in settings.poolings.enumerated() {
            let matrix = matrices[slot]
            let width = matrix.cols
            var similarities: [Double] = []
            similarities.reserveCapacity(pairs.count)
            for index in pairs.indices {
                let first = Array(matrix.data[(index * width)..<((index + 1) * width)])
                let secondRow = pairs.count + index
                let second = Array(matrix.data[(secondRow * width)..<((secondRow + 1) * width)])
                do { similarities.append(try VectorSimilarity.cosine(first, second)) } catch { throw CLIFailure("\(error)") }
            }
            let rho: Double
            do { rho = try Correlation.spearman(similarities, pairs.map(\.score)) } catch { throw CLIFailure("\(error)") }
            reports.append(json
                ? try EvalJSON.line(STSJSON(prompt: settings.promptText, pooling: pooling.rawValue, file: name, pairs: pairs.count, spearman: rho))
                : "prompt \(settings.promptText), pooling \(pooling.rawValue): \(name) (\(pairs.count) pairs) "
                    + "Spearman \(String(format: "%.4f", rho))")
        }
        print(reports.joined(separator: "\n"))
    }
}

/// `--json` output shapes (snake_case keys as documented).
struct ClusteringJSON: Encodable {
    struct Dataset: Encodable {
        var v_measure: Double
        var std: Double
        var n: Int
        var k: Int
    }
    var prompt: String
    var pooling: String
    /// Keyed by file stem.
    var datasets: [String: Dataset]
    var average: Double
}

struct STSJSON: Encodable {
    var prompt: String
    var pooling: String
    var file: String
    var pairs: Int
    var spearman: Double
}

enum EvalJSON {
    /// One compact JSON object with sorted keys (stable output).
    static func line(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do { return String(decoding: try encoder.encode(value), as: UTF8.self) } catch {
            throw CLIFailure("cannot encode the results as JSON: \(error)")
        }
    }
}
