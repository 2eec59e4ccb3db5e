import CondenseModel
import CondenseTensor
import Foundation
import Testing
@testable import CondenseTraining

@Suite struct PEFTAdapterRoundTripTests {
    /// A scratch directory removed when the value is released.
    final class Scratch {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("condense-peft-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    static func configuration(rank: Int = 4, alpha: Float = 8, targets: [LoRATarget] = LoRATarget.defaultTargets) -> TrainingConfiguration {
        TrainingConfiguration(lora: LoRAConfiguration(rank: rank, alpha: alpha, dropout: 0, targets: targets), seed: 3)
    }

    @Test(arguments: [LoRATarget.defaultTargets, LoRATarget.allCases, [.k, .down]])
    func writeThenReadGivesIdenticalAdapter(targets: [LoRATarget]) throws {
        let scratch = try Scratch()
        let model = TinyModel.config()
        let lora = LoRAConfiguration(rank: 3, alpha: 12, dropout: 0.1, targets: targets)
        let adapter = try TrainerTests.adapter(
            TrainingConfiguration(lora: lora, seed: 9), model: model)
        try adapter.writePEFT(to: scratch.path, baseModel: "HuggingFaceTB/SmolLM2-135M-Instruct")
        let read = try LoRAAdapter.readPEFT(from: scratch.path, model: model)
        #expect(read.layout == adapter.layout)
        #expect(read.layout.configuration == lora)
        #expect(read.parameters.map(\.bitPattern) == adapter.parameters.map(\.bitPattern))
    }

    /// The safetensors header lists exactly PEFT's names, F32, with the layout's A [r x in] and B [out x r] shapes.
    @Test func fileHoldsPEFTNamesAndShapes() throws {
        let scratch = try Scratch()
        let model = TinyModel.config()
        let adapter = try TrainerTests.adapter(Self.configuration(), model: model)
        try adapter.writePEFT(to: scratch.path, baseModel: "base")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: scratch.path + "/adapter_model.safetensors")))
        let length = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + length)])) as? [String: Any])
        var expected: [String: [Int]] = [:]
        for slot in adapter.layout.slots {
            let parent = [.q, .k, .v, .o].contains(slot.target) ? "self_attn" : "mlp"
            let name = "base_model.model.layers.\(slot.layer).\(parent).\(slot.target.moduleName)"
            expected[name + ".lora_A.weight"] = [slot.rank, slot.inFeatures]
            expected[name + ".lora_B.weight"] = [slot.outFeatures, slot.rank]
        }
        var actual: [String: [Int]] = [:]
        for (name, value) in header where name != "__metadata__" {
            let entry = try #require(value as? [String: Any])
            #expect(entry["dtype"] as? String == "F32")
            actual[name] = entry["shape"] as? [Int]
        }
        #expect(actual == expected)
        #expect(expected.count == 2 * 2 * LoRATarget.defaultTargets.count)
    }

    /// Inference with the adapter merged into the weights equals the trainer's forward with the adapter on the side.
    ///
    /// The two compute the same function in different float32 orders: the trainer adds s·(x·Aᵀ)·Bᵀ to x·Wᵀ, the merged
    /// model rounds W + s·B·A once and multiplies. Each differs from the exact value by a few ulps of the
    /// accumulated sums (ε ≈ 6e-8, sums over at most 48 terms), and two blocks of attention, SwiGLU and RMSNorm
    /// amplify that by a small factor: observed 1.1e-6 to 2.1e-6 of the activation RMS over the three architectures,
    /// so 1e-5 leaves about 5x headroom. The adapter itself moves the states by 2.6 to 3 RMS, so a missing,
    /// transposed or mis-scaled term could not pass (the adapter's effect is checked too).
    @Test(arguments: [Architecture.llama, .qwen2, .qwen3])
    func mergedInferenceEqualsTrainerForward(architecture: Architecture) throws {
        let scratch = try Scratch()
        let weights = TinyModel.weights(architecture)
        let configuration = Self.configuration(targets: LoRATarget.allCases)
        let adapter = try TrainerTests.adapter(configuration, model: weights.config)
        let texts = [TinyModel.tokens(9, seed: 1), TinyModel.tokens(1, seed: 2), TinyModel.tokens(17, seed: 3)]
        let trainer = try LlamaTrainer(weights: weights, configuration: configuration, adapter: adapter)
        let adapted = try trainer.finalHiddenStates(texts.map { TrainingText(tokens: $0) })

        // Through the files, as `condense --adapter` does.
        try adapter.writePEFT(to: scratch.path, baseModel: "tiny")
        let merged = try weights.mergingLoRA(PEFTAdapter.read(from: scratch.path))
        let inference = try LlamaModel(weights: merged).forward(texts).hidden.data
        let base = try LlamaModel(weights: weights).forward(texts).hidden.data

        #expect(adapted.count == inference.count)
        let scale = (adapted.reduce(0) { $0 + $1 * $1 } / Float(adapted.count)).squareRoot()
        let worst = zip(adapted, inference).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst / scale < 1e-5, "max difference \(worst / scale) × activation RMS")
        let adapterEffect = zip(adapted, base).map { abs($0 - $1) }.max() ?? 0
        #expect(adapterEffect / scale > 0.5, "the adapter barely changes the states (\(adapterEffect / scale))")
    }

    /// rsLoRA (scaling alpha / √r) becomes an adapter whose alpha / r is that same scaling.
    @Test func rsLoRAAdapterKeepsItsScaling() throws {
        let model = TinyModel.config()
        let plain = try TrainerTests.adapter(Self.configuration(rank: 4, alpha: 8), model: model)
        var peft = plain.peftAdapter(baseModel: nil)
        peft.configuration.useRSLoRA = true
        let converted = try LoRAAdapter(peft: peft, model: model)
        #expect(converted.layout.configuration.scaling == peft.configuration.scaling)
        #expect(converted.layout.configuration.alpha == 16)  // 8 · √4
        #expect(converted.parameters == plain.parameters)
    }

    @Test func mismatchesAndFileErrorsAreTrainingErrors() throws {
        let scratch = try Scratch()
        let model = TinyModel.config()
        #expect(throws: TrainingError.adapterFile(.missingFile(path: scratch.path + "/adapter_config.json"))) {
            try LoRAAdapter.readPEFT(from: scratch.path, model: model)
        }
        let adapter = try TrainerTests.adapter(Self.configuration(), model: model)
        try adapter.writePEFT(to: scratch.path, baseModel: "tiny")
        var deeper = model
        deeper.layerCount = 3
        #expect(throws: TrainingError.adapterFile(.layerCountMismatch(adapterLayers: 2, modelLayers: 3))) {
            try LoRAAdapter.readPEFT(from: scratch.path, model: deeper)
        }
        var wider = model
        wider.intermediateSize = 40
        #expect(throws: TrainingError.adapterFile(.shapeMismatch(
            tensor: "base_model.model.layers.0.mlp.gate_proj.lora_B.weight", expected: [40, 4], actual: [48, 4]))) {
            try LoRAAdapter.readPEFT(from: scratch.path, model: wider)
        }
        #expect(TrainingError.adapterFile(.layerCountMismatch(adapterLayers: 2, modelLayers: 3)).description
            == "the adapter adapts 2 layers, the model has 3")
    }
}
