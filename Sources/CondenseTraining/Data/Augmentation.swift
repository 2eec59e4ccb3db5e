/// The paper's noise augmentations of a training text, each with its own probability (all 0 = off,
/// the default): random word deletion, random swap of adjacent words, and character noise. Applied in
/// that order; the result is a pure function of (text, seed), so a resumed run sees the same noise.
public struct NoiseAugmentation: Sendable, Equatable, Codable {
    /// Probability that each word is dropped (at least one word always stays).
    public var wordDeletion: Double
    /// Probability, at each word, that it swaps places with the next one.
    public var wordSwap: Double
    /// Probability that each non-space character is deleted, replaced by a random letter, preceded by an
    /// inserted random letter, or swapped with the next character (one of the four, equally likely).
    public var characterNoise: Double

    public init(wordDeletion: Double = 0, wordSwap: Double = 0, characterNoise: Double = 0) {
        self.wordDeletion = wordDeletion
        self.wordSwap = wordSwap
        self.characterNoise = characterNoise
    }

    public static let off = NoiseAugmentation()

    public var isEnabled: Bool { wordDeletion > 0 || wordSwap > 0 || characterNoise > 0 }

    /// Names and values of probabilities outside [0, 1].
    public var invalidProbabilities: [(name: String, value: Double)] {
        [("word deletion", wordDeletion), ("word swap", wordSwap), ("character noise", characterNoise)]
            .filter { !(0...1).contains($0.1) }
    }

    /// The noisy text; `text` itself when every probability is 0. Words are re-joined with single spaces
    /// when a word-level augmentation is on.
    public func apply(to text: String, seed: UInt64) -> String {
        guard isEnabled else { return text }
        var random = SeededRandom(seed: seed)
        var result = text
        if wordDeletion > 0 || wordSwap > 0 {
            var words = text.split(whereSeparator: \.isWhitespace).map(String.init)
            if wordDeletion > 0, !words.isEmpty {
                let kept = words.filter { _ in !random.chance(wordDeletion) }
                words = kept.isEmpty ? [words[Int(random.next() % UInt64(words.count))]] : kept
            }
            if wordSwap > 0 {
                var index = 0
                while index + 1 < words.count {
                    if random.chance(wordSwap) {
                        words.swapAt(index, index + 1)
                        index += 2
                    } else {
                        index += 1
                    }
                }
            }
            result = words.joined(separator: " ")
        }
        if characterNoise > 0 { result = Self.characterNoise(result, probability: characterNoise, random: &random) }
        return result
    }

    private static let letters = Array("abcdefghijklmnopqrstuvwxyz")

    private static func characterNoise(_ text: String, probability: Double, random: inout SeededRandom) -> String {
        let characters = Array(text)
        var output: [Character] = []
        output.reserveCapacity(characters.count + 8)
        var index = 0
        while index < characters.count {
            let character = characters[index]
            index += 1
            guard !character.isWhitespace, random.chance(probability) else {
                output.append(character)
                continue
            }
            let letter = letters[Int(random.next() % UInt64(letters.count))]
            switch random.next() % 4 {
            case 0: break                                          // delete
            case 1: output.append(letter)                          // substitute
            case 2: output += [letter, character]                  // insert before
            default:                                               // swap with the next character
                if index < characters.count, !characters[index].isWhitespace {
                    output += [characters[index], character]
                    index += 1
                } else {
                    output.append(character)
                }
            }
        }
        return String(output)
    }
}

extension SeededRandom {
    /// True with probability `p` (53-bit uniform draw).
    mutating func chance(_ p: Double) -> Bool {
        Double(next() >> 11) * 0x1p-53 < p
    }
}
