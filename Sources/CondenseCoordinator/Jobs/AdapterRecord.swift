import CondenseWire
import Foundation

/// The `Adapter` message of a stored adapter directory: LoRA settings from PEFT's
/// `adapter_config.json`, the embedding recipe from `condense_recipe.json`, sizes from the files.
enum AdapterRecord {
    static func describe(id: String, job: FineTuneJob?, directory: String, artifacts: ArtifactStore) -> Adapter {
        let config = json(directory, "adapter_config.json")
        let recipe = json(directory, "condense_recipe.json")
        let (files, bytes) = artifacts.contents(of: directory)
        let recipePooling = (recipe["pooling"] as? String).flatMap(Pooling.init(wireName:))
        return Adapter(
            adapterID: id,
            baseModel: job?.spec?.baseModel.isEmpty == false ? job?.spec?.baseModel ?? "" : config["base_model_name_or_path"] as? String ?? "",
            jobID: job?.jobID ?? "",
            loraRank: UInt32(clamping: (config["r"] as? NSNumber)?.intValue ?? 0),
            loraAlpha: (config["lora_alpha"] as? NSNumber)?.floatValue ?? 0,
            targetModules: (config["target_modules"] as? [String] ?? []).sorted(),
            pooling: recipePooling ?? .unspecified,
            promptTemplate: recipe["prompt_template"] as? String ?? recipe["template"] as? String ?? "",
            normalize: recipe["normalize"] as? Bool ?? true,
            createdUnixMs: JobStore.nowMs(), sizeBytes: bytes, files: files, loaded: false)
    }

    private static func json(_ directory: String, _ name: String) -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent(name)),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [:] }
        return object
    }
}

extension Pooling {
    /// `mean`, `last`, `eos`, `weighted-mean` (the CLI's and the recipe's spelling).
    init?(wireName: String) {
        switch wireName {
        case "mean": self = .mean
        case "last": self = .last
        case "eos": self = .eos
        case "weighted-mean", "weighted_mean": self = .weightedMean
        default: return nil
        }
    }
}
