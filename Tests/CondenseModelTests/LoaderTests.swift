import CondenseModel
import CondenseTokenizer
import Foundation
import Testing

struct LoaderTests {
    /// The GGUF and Hugging Face versions of each tiny model hold the same weights in different storage
    /// types (and, for Llama, with llama.cpp's Q/K row permutation): they must load identically.
    @Test(arguments: ["tiny-llama", "tiny-qwen2", "tiny-qwen3"])
    func ggufAndSafetensorsLoadIdentically(model: String) throws {
        let gguf = try ModelLoader.load(path: LoaderFixtures.path(model + ".gguf"))
        let huggingFace = try ModelLoader.load(path: LoaderFixtures.path(model))
        expectIdentical(gguf.weights, huggingFace.weights)
        #expect(gguf.tokenizer == huggingFace.tokenizer)
        #expect(gguf.summary.format == "gguf")
        #expect(huggingFace.summary.format == "safetensors")
        #expect(gguf.summary.modelName == model)
        #expect(huggingFace.summary.modelName == model)
        #expect(gguf.summary.parameterCount == huggingFace.summary.parameterCount)
        #expect(gguf.summary.architecture == huggingFace.summary.architecture)
    }

    @Test func llamaQueryKeyRowsAreRestoredToRotateHalfOrder() throws {
        let file = try GGUFFile(path: LoaderFixtures.path("tiny-llama.gguf"))
        let weights = try file.modelWeights()
        let stored = try file.tensorF32(named: "blk.0.attn_q.weight")
        let loaded = weights.layers[0].wq
        #expect(stored != loaded.data)
        // Head dimension 8: HF row h*8 + i*4 + j was stored at row h*8 + 2j + i.
        for head in 0..<4 {
            for half in 0..<2 {
                for pair in 0..<4 {
                    let hfRow = head * 8 + half * 4 + pair
                    let storedRow = head * 8 + 2 * pair + half
                    #expect(Array(loaded.data[(hfRow * 32)..<(hfRow * 32 + 32)]) == Array(stored[(storedRow * 32)..<(storedRow * 32 + 32)]))
                }
            }
        }
        // V is never permuted.
        #expect(try file.tensorF32(named: "blk.0.attn_v.weight") == weights.layers[0].wv.data)
    }

    @Test func qwenVariantsCarryTheirExtras() throws {
        let qwen2 = try ModelLoader.load(path: LoaderFixtures.path("tiny-qwen2.gguf")).weights
        #expect(qwen2.layers[0].qBias?.count == 32)
        #expect(qwen2.layers[0].kBias?.count == 16)
        #expect(qwen2.layers[0].vBias?.count == 16)
        #expect(qwen2.layers[0].qNorm == nil)
        let qwen3 = try ModelLoader.load(path: LoaderFixtures.path("tiny-qwen3")).weights
        #expect(qwen3.layers[1].qNorm?.count == 16)
        #expect(qwen3.layers[1].kNorm?.count == 16)
        #expect(qwen3.layers[1].qBias == nil)
        #expect(qwen3.layers[1].wq.rows == 64 && qwen3.layers[1].wq.cols == 32)
        #expect(qwen3.layers[1].wo.rows == 32 && qwen3.layers[1].wo.cols == 64)
    }

    @Test func summariesCountTensorTypes() throws {
        let gguf = try ModelLoader.load(path: LoaderFixtures.path("tiny-qwen3.gguf")).summary
        #expect(gguf.tensorTypeCounts == ["BF16": 15, "F32": 9])
        #expect(gguf.parameterCount == 34400)
        #expect(gguf.fileSize == (try FileManager.default.attributesOfItem(atPath: LoaderFixtures.path("tiny-qwen3.gguf"))[.size] as? Int))
        let safetensors = try ModelLoader.load(path: LoaderFixtures.path("tiny-llama")).summary
        #expect(safetensors.tensorTypeCounts == ["BF16": 20])
        #expect(safetensors.architecture == .llama)
        #expect(safetensors.parameterCount == 28192)
    }

    /// A model split over two shards with an index loads like the single file.
    @Test func shardedSafetensorsLoad() throws {
        let single = try SafeTensorsFile(path: LoaderFixtures.path("tiny-llama/model.safetensors"))
        let names = single.tensors.keys.sorted()
        var shards = [SafeTensorsTestWriter(), SafeTensorsTestWriter()]
        var index: [(String, String)] = []
        for (number, name) in names.enumerated() {
            let info = try #require(single.tensors[name])
            shards[number % 2].tensors.append(SafeTensorsTestWriter.f32(name, shape: info.shape, values: try single.tensorF32(named: name)))
            index.append((name, "model-0000\(number % 2 + 1)-of-00002.safetensors"))
        }
        let scratch = try LoaderScratchDirectory()
        for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            _ = try scratch.write(try LoaderFixtures.bytes("tiny-llama/" + file), to: file)
        }
        _ = try scratch.write(shards[0].bytes(), to: "model-00001-of-00002.safetensors")
        _ = try scratch.write(shards[1].bytes(), to: "model-00002-of-00002.safetensors")
        _ = try scratch.write(SafeTensorsTestWriter.index(index), to: "model.safetensors.index.json")
        let sharded = try ModelLoader.load(path: scratch.url.path)
        expectIdentical(sharded.weights, try ModelLoader.load(path: LoaderFixtures.path("tiny-llama")).weights)
        #expect(sharded.summary.tensorTypeCounts == ["F32": 20])
    }

    @Test func llama3RopeScalingFromConfig() throws {
        let scratch = try LoaderScratchDirectory()
        let directory = try scratch.copyFixture("tiny-llama")
        try replaceText(in: directory + "/config.json", "\"rope_scaling\": null",
                    with: #""rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}"#)
        let config = try HuggingFaceDirectory(path: directory).config
        #expect(config.ropeScaling == Llama3RopeScaling(factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192))
    }

    @Test(.enabled(if: LoaderFixtures.defaultModelPresent, "default model absent: set CONDENSE_TEST_MODEL or add models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    func defaultModelLoads() throws {
        let model = try ModelLoader.load(path: LoaderFixtures.defaultModelPath)
        let config = model.weights.config
        #expect(config.layerCount == 30 && config.hiddenSize == 576 && config.intermediateSize == 1536)
        #expect(config.headCount == 9 && config.kvHeadCount == 3 && config.ropeTheta == 100_000 && config.vocabSize == 49152)
        #expect(model.summary.tensorTypeCounts == ["Q4_1": 210, "Q8_0": 1, "F32": 61])
        #expect(model.summary.parameterCount == 134_515_008)
        #expect(model.summary.modelName == "Smollm2 135M 8k Lc100K Mix1 Ep2")
        #expect(model.summary.fileSize == 98_362_432)
        #expect(model.weights.outputProjection == nil)
        #expect(model.tokenizer.tokens.count == 49152)
        // Reference values from gguf-py (`gguf.quants.dequantize`, then llama.cpp's permutation undone).
        let embedding = model.weights.tokenEmbedding
        #expect(Array(embedding.data.prefix(4)) == [-0.10654449462890625, 0.032978057861328125, 0.048198699951171875, -0.022830963134765625])
        #expect(Array(embedding.data.suffix(3)) == [0.12858200073242188, -0.11989402770996094, -0.0417022705078125])
        let query = model.weights.layers[0].wq
        #expect(Array(query.data[(1 * 576)..<(1 * 576 + 4)]) == [-0.1591796875, 0.39794921875, -0.0198974609375, -1.2734375])
        #expect(Array(query.data[(32 * 576)..<(32 * 576 + 4)]) == [-0.1173095703125, -0.1173095703125, -0.19281005859375, 0.26019287109375])
        let key = model.weights.layers[29].wk
        #expect(Array(key.data[(100 * 576)..<(100 * 576 + 3)]) == [0.1281890869140625, -0.0996246337890625, 0.0142822265625])
        #expect(Array(model.weights.finalNorm.prefix(3)) == [1.7578125, 1.8203125, 1.78125])
    }
}

/// Replaces the first occurrence of `target` in a text file, failing if it is absent.
func replaceText(in path: String, _ target: String, with replacement: String) throws {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    guard let range = text.range(of: target) else { throw CocoaError(.fileReadCorruptFile) }
    try text.replacingCharacters(in: range, with: replacement).write(toFile: path, atomically: true, encoding: .utf8)
}
