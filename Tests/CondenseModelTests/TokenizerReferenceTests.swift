import CondenseModel
import CondenseTokenizer
import Foundation
import Testing

/// The real SmolLM2 tokenizer, as the GGUF loader delivers it, against ids from HF `tokenizers`
/// (Tests/CondenseTokenizerTests/Fixtures/smollm2-expected-ids.json, by scripts/gen-tokenizer-fixtures.py).
@Suite struct TokenizerReferenceTests {
    private struct Fixture: Decodable {
        let corpus: [String]
        let ids: [[Int32]]
    }

    private static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `$CONDENSE_TEST_MODEL`, else models/SmolLM2-135M-Instruct.Q4_1.gguf under the package root.
    private static var modelPath: String {
        if let path = ProcessInfo.processInfo.environment["CONDENSE_TEST_MODEL"], !path.isEmpty { return path }
        return packageRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    }

    private static var modelPresent: Bool { FileManager.default.fileExists(atPath: modelPath) }

    private static func fixture() throws -> Fixture {
        let url = packageRoot.appendingPathComponent("Tests/CondenseTokenizerTests/Fixtures/smollm2-expected-ids.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    private static func tokenizer() throws -> (TokenizerSpec, Tokenizer) {
        let spec = try GGUFFile(path: modelPath).tokenizerSpec()
        return (spec, try Tokenizer(spec: spec))
    }

    @Test(.enabled(if: modelPresent, "default model absent: set CONDENSE_TEST_MODEL or add models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    func ggufTokenizerMatchesHuggingFace() throws {
        let (spec, tokenizer) = try Self.tokenizer()
        #expect(spec.preTokenizer == "smollm")
        #expect(tokenizer.vocabularySize == 49152)
        #expect(spec.addBOS == false && spec.addEOS == false)
        let fixture = try Self.fixture()
        #expect(fixture.corpus.count == fixture.ids.count && fixture.corpus.count >= 40)
        for (text, ids) in zip(fixture.corpus, fixture.ids) {
            #expect(tokenizer.encode(text) == ids, "\(String(text.prefix(80)).debugDescription)")
            #expect(tokenizer.decode(ids) == text, "\(String(text.prefix(80)).debugDescription)")
        }
    }

    @Test(.enabled(if: modelPresent, "default model absent: set CONDENSE_TEST_MODEL or add models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    func chatTemplateTokensAreSingleIDs() throws {
        let (_, tokenizer) = try Self.tokenizer()
        #expect(tokenizer.bosTokenID == 1 && tokenizer.eosTokenID == 2)
        #expect(tokenizer.encode("<|im_start|>") == [1])
        #expect(tokenizer.encode("<|im_end|>") == [2])
        #expect(tokenizer.token(for: 1) == "<|im_start|>")
        let chat = tokenizer.encode("<|im_start|>user\nHello<|im_end|>\n")
        #expect(chat.first == 1 && chat.contains(2))
        // No BOS is added for SmolLM2.
        #expect(tokenizer.encode("Hello").first != 1)
    }
}
