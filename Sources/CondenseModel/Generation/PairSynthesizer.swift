import CondenseTokenizer
import Foundation

/// Sampling settings of paraphrase generation.
public struct ParaphraseSettings: Sendable, Equatable {
    public static let defaultInstruction =
        "Paraphrase the following sentence: keep its meaning, change its wording. Output only the paraphrase."

    public var instruction: String
    public var temperature: Float
    public var topP: Float
    public var maxNewTokens: Int
    public var seed: UInt64

    public init(
        instruction: String = Self.defaultInstruction, temperature: Float = 0.7, topP: Float = 0.9,
        maxNewTokens: Int = 64, seed: UInt64 = 0
    ) {
        self.instruction = instruction
        self.temperature = temperature
        self.topP = topP
        self.maxNewTokens = maxNewTokens
        self.seed = seed
    }

    /// Everything that determines a sentence's paraphrase, as recorded for resuming.
    public var recorded: [String: String] {
        ["instruction": instruction, "temperature": "\(temperature)", "top_p": "\(topP)",
         "max_new_tokens": "\(maxNewTokens)", "seed": "\(seed)"]
    }
}

/// What became of one input sentence.
public enum ParaphraseOutcome: Sendable, Equatable {
    case paraphrase(String)
    /// Nothing left after cleaning.
    case empty
    /// The same text as the input, ignoring case and whitespace.
    case identical
}

/// Prompts an instruct model to paraphrase sentences: the chat template wraps the instruction and the
/// sentence as the user message; the answer is sampled with a per-sentence random stream (so sentence `i`
/// gets the same paraphrase whether or not the sentences before it ran in the same process), cleaned and
/// filtered. Holds a KV cache: one synthesizer per thread.
public final class PairSynthesizer {
    public let settings: ParaphraseSettings
    private let generator: TextGenerator
    private let tokenizer: Tokenizer
    private let template: ChatTemplate
    private let stopTokens: Set<Int32>
    private var cache: KVCache?

    public init(
        generator: TextGenerator, tokenizer: Tokenizer, template: ChatTemplate, settings: ParaphraseSettings
    ) throws(GenerationError) {
        self.generator = generator
        self.tokenizer = tokenizer
        self.template = template
        self.settings = settings
        stopTokens = try template.stopTokens(tokenizer: tokenizer)
    }

    /// The user message for `sentence`.
    public func userMessage(for sentence: String) -> String {
        "\(settings.instruction)\n\n\(sentence)"
    }

    /// The paraphrase of the input sentence at `index`, and how many tokens were generated for it.
    public func paraphrase(_ sentence: String, index: Int) throws(GenerationError) -> (outcome: ParaphraseOutcome, generatedTokens: Int) {
        let prompt = try template.promptTokens(system: nil, user: userMessage(for: sentence), tokenizer: tokenizer)
        let needed = prompt.count + settings.maxNewTokens
        let cache: KVCache
        if let existing = self.cache, existing.capacity >= needed {
            cache = existing
        } else {
            cache = generator.model.makeKVCache(capacity: needed)
            self.cache = cache
        }
        var sampler = Sampler(temperature: settings.temperature, topP: settings.topP, seed: settings.seed, stream: UInt64(index))
        // Only the first line is kept, so a line break after some text ends the answer.
        let generation = try generator.generate(
            prompt: prompt, maxNewTokens: settings.maxNewTokens, stopTokens: stopTokens, sampler: &sampler, cache: cache,
            shouldStop: { [tokenizer] tokens in Self.endsFirstLine(tokenizer.decode(tokens)) })
        let answer = Self.cleanAnswer(tokenizer.decode(generation.tokens))
        let outcome: ParaphraseOutcome =
            answer.isEmpty ? .empty : Self.isSameText(answer, sentence) ? .identical : .paraphrase(answer)
        return (outcome, generation.tokens.count)
    }

    static func endsFirstLine(_ text: String) -> Bool {
        text.drop(while: \.isWhitespace).contains(where: \.isNewline)
    }

    /// The answer's first non-blank line without the whitespace and quotes the model wrapped it in.
    public static func cleanAnswer(_ text: String) -> String {
        let firstLine = text.split(whereSeparator: \.isNewline).first { !$0.allSatisfy(\.isWhitespace) } ?? ""
        var answer = firstLine.trimmingCharacters(in: .whitespaces)
        let pairs: [(Character, Character)] = [("\"", "\""), ("'", "'"), ("“", "”"), ("‘", "’"), ("«", "»"), ("`", "`")]
        while answer.count >= 2, let first = answer.first, let last = answer.last,
              pairs.contains(where: { $0.0 == first && $0.1 == last }) {
            answer = String(answer.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
        }
        return answer
    }

    /// Equal ignoring case and the amount of whitespace.
    public static func isSameText(_ a: String, _ b: String) -> Bool {
        func normalized(_ text: String) -> String {
            text.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        return normalized(a) == normalized(b)
    }
}
