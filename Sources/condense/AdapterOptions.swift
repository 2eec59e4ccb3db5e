import ArgumentParser
import CondenseEmbedding
import Foundation

/// `--adapter DIR` of the commands that embed with a local model.
struct AdapterOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        """
        PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors), merged into the model's \
        weights. Its condense_recipe.json, when present, supplies the embedding settings not given as options.
        """, valueName: "dir"))
    var adapter: String?

    /// The model with the adapter merged (the plain model without --adapter).
    func loadEmbedder(modelPath: String, tokenBudget: Int = Embedder.defaultTokenBudget) throws -> Embedder {
        do { return try Embedder.load(modelPath: modelPath, adapterDirectory: adapter, tokenBudget: tokenBudget) } catch {
            throw CLIFailure("\(error)")
        }
    }

    /// Resolves settings against the adapter's recipe (none without --adapter or without condense_recipe.json).
    func recipeDefaults() throws -> RecipeDefaults {
        guard let adapter else { return RecipeDefaults(recipe: nil, source: "") }
        do {
            return RecipeDefaults(recipe: try EmbeddingRecipe.read(fromDirectory: adapter),
                                  source: (adapter as NSString).appendingPathComponent(EmbeddingRecipe.fileName))
        } catch { throw CLIFailure("\(error)") }
    }
}

/// Each embedding setting comes from its option when given, else from the adapter's recipe, else the option's
/// default; `announce()` tells on stderr which recipe values replaced a default.
struct RecipeDefaults {
    let recipe: EmbeddingRecipe?
    /// The recipe file, for the message.
    let source: String
    private(set) var changed: [String] = []

    init(recipe: EmbeddingRecipe?, source: String) {
        self.recipe = recipe
        self.source = source
    }

    mutating func pick<Value: Equatable>(
        _ given: Value?, from recipeValue: (EmbeddingRecipe) -> Value?, default fallback: Value, describe: (Value) -> String
    ) -> Value {
        if let given { return given }
        guard let recipe, let value = recipeValue(recipe) else { return fallback }
        if value != fallback { changed.append(describe(value)) }
        return value
    }

    func announce() {
        guard !changed.isEmpty else { return }
        FileHandle.standardError.write(Data("using the adapter's recipe \(source): \(changed.joined(separator: ", "))\n".utf8))
    }
}
