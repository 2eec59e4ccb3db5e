import CondenseModel
import CondenseTokenizer
import Foundation

extension Embedder {
    /// Loads a model (see `ModelLoader`) with a PEFT LoRA adapter merged into its weights; without an adapter,
    /// the same as `load(modelPath:tokenBudget:)`.
    public static func load(
        modelPath: String, adapterDirectory: String?, tokenBudget: Int = Embedder.defaultTokenBudget
    ) throws(EmbeddingError) -> Embedder {
        guard let adapterDirectory else { return try load(modelPath: modelPath, tokenBudget: tokenBudget) }
        do {
            var loaded = try ModelLoader.load(path: modelPath)
            // Merged in place: `loaded` holds the only reference to the weights, so nothing is copied.
            do { try loaded.weights.mergeLoRA(PEFTAdapter.read(from: adapterDirectory)) } catch {
                throw EmbeddingError.modelUnavailable(path: modelPath, reason: "adapter \(adapterDirectory): \(error)")
            }
            let model = try LlamaModel(packing: &loaded.weights)
            let tokenizer = try Tokenizer(spec: loaded.tokenizer)
            let name = URL(fileURLWithPath: modelPath).lastPathComponent + "+"
                + URL(fileURLWithPath: adapterDirectory).standardizedFileURL.lastPathComponent
            return Embedder(model: model, tokenizer: tokenizer, modelName: name, tokenBudget: tokenBudget)
        } catch let error as EmbeddingError {
            throw error
        } catch {
            throw .modelUnavailable(path: modelPath, reason: "\(error)")
        }
    }
}
