import ArgumentParser
import CondenseEmbedding
import CondenseEvaluation
import CondenseModel
import Foundation

struct AttentionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Attention each input token receives from the final token in the last layer, averaged over heads.",
        discussion: """
            The prompted text is run as for `last` pooling (with `--pooling eos`, the EOS id is appended and \
            becomes the final token). Prints a table; --svg also writes a bar chart.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var adapterOptions: AdapterOptions
    // Optional so that an adapter's recipe can supply them (the defaults are in the help).
    @Option(help: "Prompt name (\(PromptTemplate.namedPromptNames.joined(separator: ", "))) or a template containing {text} once. (default: none)")
    var prompt: String?
    @Option(help: "last (final token of the prompted text) or eos (EOS id appended). (default: last)")
    var pooling: String?
    @Option(help: "The text to analyse.")
    var text: String
    @Option(help: "Write an SVG bar chart to this file.")
    var svg: String?

    func run() throws {
        let givenPooling = try pooling.map { name in
            guard let pooling = Pooling(rawValue: name), pooling == .last || pooling == .eos else {
                throw CLIFailure("--pooling must be last or eos for the attention analysis")
            }
            return pooling
        }
        let givenTemplate: PromptTemplate?
        do { givenTemplate = try prompt.map { name throws(EmbeddingError) in try PromptTemplate(nameOrTemplate: name) } } catch {
            throw CLIFailure("\(error)")
        }
        var recipe = try adapterOptions.recipeDefaults()
        let template = recipe.pick(givenTemplate, from: { $0.prompt }, default: .none, describe: { "prompt \($0.label)" })
        // The analysis reads one final token: a recipe's mean or weighted-mean pooling does not apply.
        let pooling = recipe.pick(givenPooling, from: { [.last, .eos].contains($0.pooling) ? $0.pooling : nil }, default: .last,
                                  describe: { "pooling \($0.rawValue)" })
        recipe.announce()
        let embedder = try adapterOptions.loadEmbedder(modelPath: modelOptions.model)

        let prepared: PreparedText
        let attention: [Double]
        do {
            prepared = try embedder.prepare(text, options: EmbeddingOptions(prompt: template, pooling: pooling))
            let output = try embedder.model.forward([prepared.tokens], options: ForwardOptions(returnLastLayerAttention: true))
            guard let matrix = output.lastLayerAttention?.first else { throw CLIFailure("the model returned no attention") }
            attention = try AttentionAnalysis.finalTokenAttention(matrix, heads: embedder.model.config.headCount)
        } catch let failure as CLIFailure {
            throw failure
        } catch {
            throw CLIFailure("\(error)")
        }

        let labels = prepared.tokens.map { AttentionAnalysis.readableToken(embedder.tokenizer.decode([$0])) }
        print("prompt \(template.label), \(prepared.tokens.count) tokens; final token: \(labels.last ?? "")")
        print(AttentionAnalysis.table(tokens: labels, weights: attention), terminator: "")
        let textShare = prepared.textTokens.reduce(0.0) { $0 + attention[$1] }
        let total = attention.reduce(0, +)
        print(String(
            format: "first token %.4f, text tokens %.4f, prompt and special tokens %.4f (final token itself %.4f)",
            attention.first ?? 0, textShare, total - textShare, attention.last ?? 0))

        if let svg {
            let title = "Last-layer attention from the final token, mean over heads; prompt \(template.label)"
            let chart = AttentionAnalysis.svgChart(tokens: labels, weights: attention, title: title)
            do { try Data(chart.utf8).write(to: URL(fileURLWithPath: svg), options: .atomic) } catch {
                throw CLIFailure("cannot write \(svg): \(error.localizedDescription)")
            }
        }
    }
}
