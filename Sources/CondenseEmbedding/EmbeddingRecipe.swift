import Foundation

/// How texts were embedded when an adapter was trained: stored next to the adapter files as
/// `condense_recipe.json`, so that inference with the adapter prepares and pools texts the same way.
public struct EmbeddingRecipe: Sendable, Equatable {
    public var prompt: PromptTemplate
    public var pooling: Pooling
    public var normalize: Bool
    public var excludePrompt: Bool
    /// Token limit of each raw text, before the prompt is added.
    public var maxTokens: Int

    public static let fileName = "condense_recipe.json"

    public init(
        prompt: PromptTemplate = .none, pooling: Pooling = .mean, normalize: Bool = false, excludePrompt: Bool = false,
        maxTokens: Int = EmbeddingOptions.defaultMaxTokens
    ) {
        self.prompt = prompt
        self.pooling = pooling
        self.normalize = normalize
        self.excludePrompt = excludePrompt
        self.maxTokens = maxTokens
    }

    /// The recipe part of `options` (dimensions and truncation policy are per request, not per model).
    public init(options: EmbeddingOptions) {
        self.init(prompt: options.prompt, pooling: options.pooling, normalize: options.normalize,
                  excludePrompt: options.excludePrompt, maxTokens: options.maxTokens)
    }

    /// Embedding options that follow the recipe.
    public func options(dimensions: Int? = nil, truncation: TruncationPolicy = .truncate) -> EmbeddingOptions {
        EmbeddingOptions(prompt: prompt, pooling: pooling, normalize: normalize, excludePrompt: excludePrompt,
                         dimensions: dimensions, maxTokens: maxTokens, truncation: truncation)
    }

    /// Writes `condense_recipe.json` into `directory` (atomically).
    public func write(toDirectory directory: String) throws(EmbeddingRecipeError) {
        let path = Self.path(in: directory)
        let file = RecipeFile(
            prompt: prompt.name, promptTemplate: prompt.template, pooling: pooling.rawValue, normalize: normalize,
            excludePrompt: excludePrompt, maxTokens: maxTokens)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do { try encoder.encode(file).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw EmbeddingRecipeError(path: path, detail: "cannot write: \(error.localizedDescription)")
        }
    }

    /// The recipe stored in `directory`, or nil when it has none.
    public static func read(fromDirectory directory: String) throws(EmbeddingRecipeError) -> EmbeddingRecipe? {
        let path = path(in: directory)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let file: RecipeFile
        do { file = try JSONDecoder().decode(RecipeFile.self, from: Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            throw EmbeddingRecipeError(path: path, detail: describe(error))
        }
        guard let pooling = Pooling(rawValue: file.pooling) else {
            throw EmbeddingRecipeError(path: path, detail: "unknown pooling '\(file.pooling)'")
        }
        guard file.maxTokens >= 1 else { throw EmbeddingRecipeError(path: path, detail: "max_tokens \(file.maxTokens) must be at least 1") }
        // The template text is what the adapter was trained with; the name is kept when it still denotes that text.
        let prompt: PromptTemplate
        do {
            if let name = file.prompt, let named = try? PromptTemplate(nameOrTemplate: name), named.name != nil,
               named.template == file.promptTemplate {
                prompt = named
            } else {
                prompt = try PromptTemplate(nameOrTemplate: file.promptTemplate)
            }
        } catch { throw EmbeddingRecipeError(path: path, detail: "\(error)") }
        return EmbeddingRecipe(prompt: prompt, pooling: pooling, normalize: file.normalize, excludePrompt: file.excludePrompt,
                               maxTokens: file.maxTokens)
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context), DecodingError.typeMismatch(_, let context),
             DecodingError.valueNotFound(_, let context), DecodingError.keyNotFound(_, let context):
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            return key.isEmpty ? context.debugDescription : "\(key): \(context.debugDescription)"
        default:
            return error.localizedDescription
        }
    }

    static func path(in directory: String) -> String {
        directory.hasSuffix("/") ? directory + fileName : directory + "/" + fileName
    }
}

/// A `condense_recipe.json` that could not be read or written.
public struct EmbeddingRecipeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var detail: String

    public init(path: String, detail: String) {
        self.path = path
        self.detail = detail
    }

    public var description: String { "embedding recipe \(path): \(detail)" }
}

/// The file's JSON: `prompt` is the built-in prompt's name (absent for a custom template).
private struct RecipeFile: Codable {
    var prompt: String?
    var promptTemplate: String
    var pooling: String
    var normalize: Bool
    var excludePrompt: Bool
    var maxTokens: Int

    enum CodingKeys: String, CodingKey {
        case prompt, promptTemplate = "prompt_template", pooling, normalize, excludePrompt = "exclude_prompt"
        case maxTokens = "max_tokens"
    }
}
