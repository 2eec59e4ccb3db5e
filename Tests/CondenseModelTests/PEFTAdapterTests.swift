import CondenseModel
import CondenseTensor
import Foundation
import Testing

/// Random PEFT adapters for the tiny models, and the pieces of a written file the tests inspect.
enum PEFTFixtures {
    static func adapter(
        for config: ModelConfig, rank: Int = 4, alpha: Float = 8, modules: [PEFTAdapter.Module] = [.q, .v, .o, .gate, .up, .down],
        layers: Int? = nil, useRSLoRA: Bool = false, seed: UInt64 = 11
    ) -> PEFTAdapter {
        var random = ForwardTestRandom(seed: seed)
        let layerList = (0..<(layers ?? config.layerCount)).map { _ in
            Dictionary(uniqueKeysWithValues: modules.map { module in
                let (inFeatures, outFeatures) = module.features(in: config)
                let a = Matrix(rows: rank, cols: inFeatures, data: random.normal(rank * inFeatures, deviation: 1 / Float(inFeatures).squareRoot()))
                let b = Matrix(rows: outFeatures, cols: rank, data: random.normal(outFeatures * rank, deviation: 0.1))
                return (module, PEFTAdapter.Factors(a: a, b: b))
            })
        }
        return PEFTAdapter(
            configuration: .init(rank: rank, alpha: alpha, dropout: 0.05, targetModules: modules, useRSLoRA: useRSLoRA,
                                 baseModel: "tiny/base"),
            layers: layerList)
    }

    /// The JSON header of a safetensors file, parsed, and its raw length.
    static func header(_ path: String) throws -> (json: [String: Any], length: Int) {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let length = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + length)])) as? [String: Any])
        return (json, length)
    }
}

@Suite struct SafeTensorsWriterTests {
    @Test func roundTripIsBitExactWithMetadata() throws {
        let scratch = try LoaderScratchDirectory()
        // Signed zero, subnormals, extremes, infinities and a NaN payload must survive unchanged.
        let special: [Float] = [0, -0.0, .leastNonzeroMagnitude, -.leastNormalMagnitude, .greatestFiniteMagnitude, .infinity,
                                -.infinity, Float(bitPattern: 0x7FC0_1234), 1 / 3, -2.5e-20]
        var random = ForwardTestRandom(seed: 3)
        let tensors: [SafeTensorsWriter.Tensor] = [
            .init(name: "z.last", shape: [2, 5], values: special),
            .init(name: "a.first", shape: [3, 4, 2], values: random.normal(24, deviation: 1)),
            .init(name: "scalar", shape: [], values: [42]),
            .init(name: "empty", shape: [0, 3], values: []),
            .init(name: "odd \"name\" é", shape: [3], values: [1, 2, 3]),
        ]
        let metadata = ["format": "pt", "quote\"back\\slash": "line\nbreak\ttab é ∑"]
        let path = scratch.url.appendingPathComponent("t.safetensors").path
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: path)

        let file = try SafeTensorsFile(path: path)
        #expect(Set(file.tensors.keys) == Set(tensors.map(\.name)))
        for tensor in tensors {
            let info = try #require(file.tensors[tensor.name])
            #expect(info.dtype == "F32")
            #expect(info.shape == tensor.shape)
            #expect(try file.tensorF32(named: tensor.name).map(\.bitPattern) == tensor.values.map(\.bitPattern))
        }
        let (header, length) = try PEFTFixtures.header(path)
        #expect(header["__metadata__"] as? [String: String] == metadata)
        // Header padded to 8 bytes, so the data (and every F32 tensor in it) starts 8-byte aligned.
        #expect(length % 8 == 0)
        // Data in sorted-name order, packed from offset 0.
        let offsets = tensors.map(\.name).sorted().compactMap { file.tensors[$0]?.fileRange }
        #expect(offsets.first?.lowerBound == 8 + length)
        for (earlier, later) in zip(offsets, offsets.dropFirst()) { #expect(earlier.upperBound == later.lowerBound) }
        #expect(offsets.last?.upperBound == file.fileSize)
    }

    @Test func headerBytesAreCanonical() throws {
        let data = try SafeTensorsWriter.encode(
            [.init(name: "b", shape: [1], values: [2]), .init(name: "a", shape: [1, 2], values: [0, 1])], metadata: ["format": "pt"])
        let header = #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        let padded = header + String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)
        #expect(Array(data[0..<8]) == withUnsafeBytes(of: UInt64(padded.utf8.count).littleEndian) { Array($0) })
        #expect(String(decoding: data[8..<(8 + padded.utf8.count)], as: UTF8.self) == padded)
        #expect(data.count == 8 + padded.utf8.count + 12)
    }

    @Test func invalidTensorsAreRefused() throws {
        #expect(throws: SafeTensorsWriteError.invalidTensor(name: "w", detail: "3 values do not fill shape [2, 2]")) {
            try SafeTensorsWriter.encode([.init(name: "w", shape: [2, 2], values: [1, 2, 3])])
        }
        #expect(throws: SafeTensorsWriteError.invalidTensor(name: "w", detail: "the name is used twice")) {
            try SafeTensorsWriter.encode([.init(name: "w", shape: [1], values: [1]), .init(name: "w", shape: [1], values: [2])])
        }
        let scratch = try LoaderScratchDirectory()
        let path = scratch.url.appendingPathComponent("missing-dir/t.safetensors").path
        #expect(throws: SafeTensorsWriteError.self) { try SafeTensorsWriter.write([], to: path) }
    }
}

@Suite struct PEFTAdapterTests {
    static let config = TinyModels.config(.llama)

    @Test func writeThenReadIsIdentical() throws {
        let scratch = try LoaderScratchDirectory()
        let adapter = PEFTFixtures.adapter(for: Self.config, modules: PEFTAdapter.Module.allCases, useRSLoRA: true)
        let directory = scratch.url.appendingPathComponent("adapter").path
        try adapter.write(to: directory)
        #expect(try PEFTAdapter.read(from: directory) == adapter)
    }

    @Test func filesUsePEFTNamesShapesAndConfiguration() throws {
        let scratch = try LoaderScratchDirectory()
        let adapter = PEFTFixtures.adapter(for: Self.config, rank: 3, alpha: 16, modules: [.down, .q, .k])
        let directory = scratch.url.appendingPathComponent("adapter").path
        try adapter.write(to: directory)

        let (header, _) = try PEFTFixtures.header(directory + "/adapter_model.safetensors")
        #expect(header["__metadata__"] as? [String: String] == ["format": "pt"])
        let hidden = Self.config.hiddenSize, query = Self.config.headCount * Self.config.headDim
        let keyValue = Self.config.kvHeadCount * Self.config.headDim, ffn = Self.config.intermediateSize
        var expected: [String: [Int]] = [:]
        for layer in 0..<Self.config.layerCount {
            let prefix = "base_model.model.layers.\(layer)."
            expected[prefix + "self_attn.q_proj.lora_A.weight"] = [3, hidden]
            expected[prefix + "self_attn.q_proj.lora_B.weight"] = [query, 3]
            expected[prefix + "self_attn.k_proj.lora_A.weight"] = [3, hidden]
            expected[prefix + "self_attn.k_proj.lora_B.weight"] = [keyValue, 3]
            expected[prefix + "mlp.down_proj.lora_A.weight"] = [3, ffn]
            expected[prefix + "mlp.down_proj.lora_B.weight"] = [hidden, 3]
        }
        var actual: [String: [Int]] = [:]
        for (name, value) in header where name != "__metadata__" {
            let entry = try #require(value as? [String: Any])
            #expect(entry["dtype"] as? String == "F32", "\(name)")
            actual[name] = entry["shape"] as? [Int]
        }
        #expect(actual == expected)

        let configData = try Data(contentsOf: URL(fileURLWithPath: directory + "/adapter_config.json"))
        let config = try #require(try JSONSerialization.jsonObject(with: configData) as? [String: Any])
        #expect(config["peft_type"] as? String == "LORA")
        #expect(config["r"] as? Int == 3)
        #expect(config["lora_alpha"] as? Double == 16)
        #expect(config["lora_dropout"] as? Double == 0.05)
        #expect(config["target_modules"] as? [String] == ["q_proj", "k_proj", "down_proj"])
        #expect(config["bias"] as? String == "none")
        #expect(config["use_rslora"] as? Bool == false)
        #expect(config["use_dora"] as? Bool == false)
        #expect(config["fan_in_fan_out"] as? Bool == false)
        #expect(config["base_model_name_or_path"] as? String == "tiny/base")
        #expect(config["task_type"] as? String == "FEATURE_EXTRACTION")
        #expect(config["inference_mode"] as? Bool == true)
        #expect((config["rank_pattern"] as? [String: Any])?.isEmpty == true)
    }

    /// A file as PEFT saves it from a bare `AutoModel` (prefix `base_model.model.layers`), in F16, with rsLoRA,
    /// written byte by byte by the test writer (not `SafeTensorsWriter`); one name keeps the `.default` segment.
    @Test func readsIndependentlyWrittenF16RSLoRAFixture() throws {
        let scratch = try LoaderScratchDirectory()
        let directory = scratch.url.appendingPathComponent("automodel-adapter")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let rank = 4, hidden = Self.config.hiddenSize, keyValue = Self.config.kvHeadCount * Self.config.headDim
        // Multiples of 1/64 in [-2, 2]: exact in F16.
        func values(_ count: Int, seed: Int) -> [Float] { (0..<count).map { Float(($0 * 37 + seed * 11) % 257 - 128) / 64 } }
        func f16(_ name: String, _ shape: [Int], _ values: [Float]) -> SafeTensorsTestWriter.Tensor {
            var bytes: [UInt8] = []
            for value in values { withUnsafeBytes(of: Float16(value).bitPattern.littleEndian) { bytes += $0 } }
            return .init(name: name, dtype: "F16", shape: shape, data: bytes)
        }
        var tensors: [SafeTensorsTestWriter.Tensor] = []
        var expected: [[PEFTAdapter.Module: PEFTAdapter.Factors]] = []
        for layer in 0..<Self.config.layerCount {
            let aQ = values(rank * hidden, seed: layer * 4), bQ = values(hidden * rank, seed: layer * 4 + 1)
            let aV = values(rank * hidden, seed: layer * 4 + 2), bV = values(keyValue * rank, seed: layer * 4 + 3)
            let prefix = "base_model.model.layers.\(layer).self_attn."
            tensors += [
                f16(prefix + "q_proj.lora_A.weight", [rank, hidden], aQ),
                f16(prefix + "q_proj.lora_B.weight", [hidden, rank], bQ),
                f16(prefix + "v_proj.lora_A.default.weight", [rank, hidden], aV),
                f16(prefix + "v_proj.lora_B.weight", [keyValue, rank], bV),
            ]
            expected.append([
                .q: .init(a: Matrix(rows: rank, cols: hidden, data: aQ), b: Matrix(rows: hidden, cols: rank, data: bQ)),
                .v: .init(a: Matrix(rows: rank, cols: hidden, data: aV), b: Matrix(rows: keyValue, cols: rank, data: bV)),
            ])
        }
        _ = try scratch.write(SafeTensorsTestWriter(tensors: tensors).bytes(), to: "automodel-adapter/adapter_model.safetensors")
        let config = """
            {"alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M",
             "bias": "none", "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
             "layer_replication": null, "layers_pattern": null, "layers_to_transform": null, "loftq_config": {},
             "lora_alpha": 8, "lora_dropout": 0.1, "megatron_config": null, "megatron_core": "megatron.core",
             "modules_to_save": null, "peft_type": "LORA", "r": 4, "rank_pattern": {}, "revision": null,
             "target_modules": ["v_proj", "q_proj"], "task_type": "FEATURE_EXTRACTION", "use_dora": false, "use_rslora": true}
            """
        _ = try scratch.write(Array(config.utf8), to: "automodel-adapter/adapter_config.json")

        let adapter = try PEFTAdapter.read(from: directory.path)
        #expect(adapter.configuration == PEFTAdapter.Configuration(
            rank: 4, alpha: 8, dropout: 0.1, targetModules: [.q, .v], useRSLoRA: true,
            baseModel: "HuggingFaceTB/SmolLM2-135M", taskType: "FEATURE_EXTRACTION"))
        #expect(adapter.configuration.scaling == 4)  // 8 / √4, not 8 / 4
        #expect(adapter.layers == expected)
        try adapter.validate(against: Self.config)
    }

    @Test func mergeAddsScaledProductToAdaptedWeightsOnly() throws {
        let weights = TinyModels.weights(Self.config, seed: 5)
        for useRSLoRA in [false, true] {
            let adapter = PEFTFixtures.adapter(for: Self.config, rank: 4, alpha: 6, modules: [.q, .k, .down], useRSLoRA: useRSLoRA)
            let merged = try weights.mergingLoRA(adapter)
            let scaling = Double(useRSLoRA ? 6 / 2 : 6.0 / 4)
            for (layer, (original, result)) in zip(weights.layers, merged.layers).enumerated() {
                for (module, keyPath) in [(PEFTAdapter.Module.q, \LayerWeights.wq), (.k, \.wk), (.down, \.wDown)] {
                    let factors = try #require(adapter.layers[layer][module])
                    let w = original[keyPath: keyPath], updated = result[keyPath: keyPath]
                    var worst = 0.0
                    for row in 0..<w.rows {
                        for column in 0..<w.cols {
                            var product = 0.0
                            for r in 0..<4 {
                                product += Double(factors.b.data[row * 4 + r]) * Double(factors.a.data[r * w.cols + column])
                            }
                            let reference = Double(w.data[row * w.cols + column]) + scaling * product
                            worst = max(worst, abs(Double(updated.data[row * w.cols + column]) - reference))
                        }
                    }
                    // One float32 rounding of values of size ~1: far below any misplaced term.
                    #expect(worst < 1e-5, "layer \(layer) \(module): \(worst)")
                }
                #expect(result.wv == original.wv && result.wo == original.wo && result.wGate == original.wGate)
                #expect(result.wUp == original.wUp && result.attentionNorm == original.attentionNorm)
            }
            #expect(merged.tokenEmbedding == weights.tokenEmbedding && merged.finalNorm == weights.finalNorm)
        }
    }

    @Test func mergeErrorsLeaveWeightsUnchanged() throws {
        let weights = TinyModels.weights(Self.config, seed: 5)
        let threeLayers = PEFTFixtures.adapter(for: Self.config, layers: 3)
        var target = weights
        #expect(throws: AdapterError.layerCountMismatch(adapterLayers: 3, modelLayers: 2)) { try target.mergeLoRA(threeLayers) }

        // An adapter for a wider model: layer 0's q_proj lora_A is the first factor that does not fit.
        var wider = Self.config
        wider.hiddenSize = 48
        let misfit = PEFTFixtures.adapter(for: wider, modules: [.q, .v])
        #expect(throws: AdapterError.shapeMismatch(
            tensor: "base_model.model.layers.0.self_attn.q_proj.lora_A.weight", expected: [4, 64], actual: [4, 48])) {
            try target.mergeLoRA(misfit)
        }
        #expect(target.layers.map(\.wq) == weights.layers.map(\.wq))
        #expect(AdapterError.layerCountMismatch(adapterLayers: 3, modelLayers: 2).description == "the adapter adapts 3 layers, the model has 2")
    }

    @Test func missingFilesAreNamed() throws {
        let scratch = try LoaderScratchDirectory()
        let directory = scratch.url.path
        #expect(throws: AdapterError.missingFile(path: directory + "/adapter_config.json")) { try PEFTAdapter.read(from: directory) }

        try PEFTFixtures.adapter(for: Self.config).write(to: directory)
        try FileManager.default.removeItem(atPath: directory + "/adapter_model.safetensors")
        #expect(throws: AdapterError.missingFile(path: directory + "/adapter_model.safetensors")) { try PEFTAdapter.read(from: directory) }

        _ = try scratch.write([0x80, 0x02], to: "adapter_model.bin")
        let binOnly = AdapterError.onlySafeTensorsSupported(path: directory + "/adapter_model.bin")
        #expect(throws: binOnly) { try PEFTAdapter.read(from: directory) }
        #expect(binOnly.description.contains("only adapter_model.safetensors is supported"))
    }

    @Test func malformedFilesAreReported() throws {
        let scratch = try LoaderScratchDirectory()
        let directory = scratch.url.path
        try PEFTFixtures.adapter(for: Self.config, modules: [.q]).write(to: directory)
        let weights = directory + "/adapter_model.safetensors", configPath = directory + "/adapter_config.json"
        let validConfig = try String(contentsOfFile: configPath, encoding: .utf8)
        func withConfig(_ edit: (inout [String: Any]) -> Void) throws -> AdapterError? {
            var json = try #require(try JSONSerialization.jsonObject(with: Data(validConfig.utf8)) as? [String: Any])
            edit(&json)
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: configPath))
            defer { try? Data(validConfig.utf8).write(to: URL(fileURLWithPath: configPath)) }
            do {
                _ = try PEFTAdapter.read(from: directory)
                return nil
            } catch { return error }
        }
        #expect(try withConfig { $0["rank_pattern"] = ["q_proj": 8] } == .unsupportedConfiguration(
            path: configPath, detail: "rank_pattern is not empty; per-module ranks are not supported"))
        #expect(try withConfig { $0["alpha_pattern"] = ["q_proj": 8] } == .unsupportedConfiguration(
            path: configPath, detail: "alpha_pattern is not empty; per-module alphas are not supported"))
        #expect(try withConfig { $0["use_dora"] = true } == .unsupportedConfiguration(
            path: configPath, detail: "use_dora is true; DoRA is not supported"))
        #expect(try withConfig { $0["target_modules"] = ["q_proj", "lm_head"] } == .unsupportedConfiguration(
            path: configPath, detail: "target module 'lm_head' is not a Llama projection (supported: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"))
        guard case .invalidConfiguration(configPath, let detail)? = try withConfig({ $0["r"] = "four" }) else {
            Issue.record("a string r not reported as an invalid configuration")
            return
        }
        #expect(detail.hasPrefix("r: "))
        #expect(try withConfig { $0["r"] = 2 } == .invalidTensor(
            path: weights, tensor: "base_model.model.layers.0.self_attn.q_proj.lora_A.weight",
            detail: "has shape [4, 64]: lora_A needs 2 rows (r = 2)"))
        #expect(try withConfig { $0["target_modules"] = ["q_proj", "v_proj"] } == .missingTensor(
            path: weights, tensor: "base_model.model.layers.0.self_attn.v_proj.lora_A.weight"))
        // A pattern-valued target_modules: the tensors say which modules are adapted.
        #expect(try withConfig { $0["target_modules"] = ".*q_proj" } == nil)

        let q = Matrix(rows: 4, cols: 64, data: .init(repeating: 0.5, count: 256))
        func writeTensors(_ tensors: [SafeTensorsTestWriter.Tensor]) throws {
            try Data(SafeTensorsTestWriter(tensors: tensors).bytes()).write(to: URL(fileURLWithPath: weights))
        }
        let bName = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
        try writeTensors([
            SafeTensorsTestWriter.f32("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", shape: [4, 64], values: q.data),
            SafeTensorsTestWriter.f32(bName, shape: [64, 4], values: q.data),
            SafeTensorsTestWriter.f32("base_model.model.lm_head.weight", shape: [1], values: [1]),
        ])
        #expect(throws: AdapterError.unexpectedTensor(path: weights, tensor: "base_model.model.lm_head.weight")) {
            try PEFTAdapter.read(from: directory)
        }
        try writeTensors([
            SafeTensorsTestWriter.f32("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", shape: [4, 64], values: q.data),
            .init(name: bName, dtype: "I8", shape: [64, 4], data: .init(repeating: 0, count: 256)),
        ])
        #expect(throws: AdapterError.invalidTensor(path: weights, tensor: bName, detail: "has dtype I8 (supported: F32, F16, BF16)")) {
            try PEFTAdapter.read(from: directory)
        }
        try writeTensors([
            SafeTensorsTestWriter.f32("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", shape: [4, 64], values: q.data),
            SafeTensorsTestWriter.f32("base_model.model.layers.0.self_attn.q_proj.lora_A.weight", shape: [4, 64], values: q.data),
            SafeTensorsTestWriter.f32(bName, shape: [64, 4], values: q.data),
        ])
        #expect(throws: AdapterError.invalidTensor(
            path: weights, tensor: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", detail: "is stored twice (under two names)")) {
            try PEFTAdapter.read(from: directory)
        }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: weights))
        guard case .unreadableTensors(let path, _)? = adapterError({ try PEFTAdapter.read(from: directory) }) else {
            Issue.record("truncated safetensors not reported")
            return
        }
        #expect(path == weights)
    }

    @Test func inconsistentAdapterIsNotWritten() throws {
        let scratch = try LoaderScratchDirectory()
        var adapter = PEFTFixtures.adapter(for: Self.config, modules: [.q, .v])
        adapter.layers[1][.v] = nil
        #expect(throws: AdapterError.inconsistentAdapter("layer 1 adapts [\"q_proj\"], the target modules are [\"q_proj\", \"v_proj\"]")) {
            try adapter.write(to: scratch.url.path)
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.url.path + "/adapter_model.safetensors"))
    }
}

/// The `AdapterError` that `body` throws, nil (and a recorded issue) otherwise.
func adapterError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) -> AdapterError? {
    do {
        _ = try body()
        Issue.record("expected an AdapterError, got success", sourceLocation: sourceLocation)
    } catch let error as AdapterError {
        return error
    } catch {
        Issue.record("expected an AdapterError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
