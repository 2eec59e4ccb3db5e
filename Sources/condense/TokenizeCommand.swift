import ArgumentParser
import CondenseModel
import CondenseTokenizer
import Foundation

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Tokenize texts with the model's own tokenizer.",
        discussion: "Writes one {\"index\": i, \"ids\": [...]} line per input text (.txt, .jsonl or .csv input).")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Input texts: .txt (one per line), .jsonl (\"text\" field) or .csv (\"text\" column).")
    var input: String
    @Option(help: "Output .jsonl file.")
    var output: String
    @Flag(name: .customLong("no-special-tokens"), help: "Do not add the BOS/EOS tokens the model declares.")
    var noSpecialTokens = false

    func run() throws {
        let texts: [String]
        do { texts = try TextInput.readTexts(path: input) } catch { throw CLIFailure("\(error)") }
        let tokenizer: Tokenizer
        do { tokenizer = try Tokenizer(spec: ModelLoader.load(path: modelOptions.model).tokenizer) } catch {
            throw CLIFailure("\(error)")
        }
        var out = ""
        out.reserveCapacity(texts.count * 64)
        for (index, text) in texts.enumerated() {
            let ids = tokenizer.encode(text, addSpecialTokens: !noSpecialTokens)
            out += "{\"index\": \(index), \"ids\": [\(ids.map(String.init).joined(separator: ", "))]}\n"
        }
        do { try out.write(toFile: output, atomically: true, encoding: .utf8) } catch {
            throw CLIFailure("cannot write \(output): \(error.localizedDescription)")
        }
    }
}
