import CondenseModel
import Foundation
import Testing

struct SafeTensorsErrorTests {
    @Test func truncatedFileAtEveryCutPoint() throws {
        let bytes = try LoaderFixtures.bytes("tiny-llama/model.safetensors")
        let scratch = try LoaderScratchDirectory()
        let cuts = Array(0..<3_000).filter { $0 < 32 || $0 % 11 == 0 } + Array(stride(from: 3_000, to: bytes.count, by: 1_999)) + [bytes.count - 1]
        for cut in cuts {
            let path = try scratch.write(Array(bytes.prefix(cut)), to: "cut.safetensors")
            guard case .truncated? = loadError({ try SafeTensorsFile(path: path) }) else {
                Issue.record("cut at \(cut) not reported as truncated")
                return
            }
        }
    }

    @Test func malformedHeadersAreReported() throws {
        let scratch = try LoaderScratchDirectory()
        let values = SafeTensorsTestWriter.f32("w", shape: [2], values: [1, 2])

        var badJSON = SafeTensorsTestWriter(tensors: [values])
        badJSON.headerOverride = "{\"w\": {\"dtype\": \"F32\", "
        let badJSONPath = try scratch.write(badJSON.bytes(), to: "json.safetensors")
        guard case .corrupted(let path, _)? = loadError({ try SafeTensorsFile(path: badJSONPath) }) else {
            Issue.record("invalid JSON not reported as corrupted")
            return
        }
        #expect(path == badJSONPath)

        var wrongSize = values
        wrongSize.shape = [3]
        let wrongSizePath = try scratch.write(SafeTensorsTestWriter(tensors: [wrongSize]).bytes(), to: "size.safetensors")
        #expect(loadError { try SafeTensorsFile(path: wrongSizePath) }
            == .corrupted(path: wrongSizePath, detail: "tensor 'w' of shape [3] F32 needs 12 bytes, data_offsets span 8"))

        var beyond = values
        beyond.offsets = [0, 800]
        let beyondPath = try scratch.write(SafeTensorsTestWriter(tensors: [beyond]).bytes(), to: "beyond.safetensors")
        #expect(loadError { try SafeTensorsFile(path: beyondPath) }
            == .truncated(path: beyondPath, detail: "data of tensor 'w' ends at 800, the data section has 8 bytes"))

        var reversed = values
        reversed.offsets = [8, 0]
        let reversedPath = try scratch.write(SafeTensorsTestWriter(tensors: [reversed]).bytes(), to: "reversed.safetensors")
        #expect(loadError { try SafeTensorsFile(path: reversedPath) }
            == .corrupted(path: reversedPath, detail: "tensor 'w' has invalid data_offsets [8, 0]"))

        var second = SafeTensorsTestWriter.f32("v", shape: [1], values: [3])
        second.offsets = [4, 8]
        let overlapPath = try scratch.write(SafeTensorsTestWriter(tensors: [values, second]).bytes(), to: "overlap.safetensors")
        guard case .corrupted(_, let detail)? = loadError({ try SafeTensorsFile(path: overlapPath) }) else {
            Issue.record("overlapping tensors not reported as corrupted")
            return
        }
        #expect(detail.contains("overlap"))
    }

    @Test func unsupportedDtypeIsNamed() throws {
        let scratch = try LoaderScratchDirectory()
        let tensor = SafeTensorsTestWriter.Tensor(name: "ids", dtype: "I32", shape: [2], data: [1, 0, 0, 0, 2, 0, 0, 0])
        let file = try SafeTensorsFile(path: try scratch.write(SafeTensorsTestWriter(tensors: [tensor]).bytes(), to: "i32.safetensors"))
        #expect(loadError { try file.tensorF32(named: "ids") } == .unsupportedTensorType(tensor: "ids", type: "I32"))
        #expect(loadError { try file.tensorF32(named: "nope") } == .missingTensor(name: "nope"))
    }

    /// A directory whose weights lack one layer tensor, or the untied LM head.
    @Test func missingHuggingFaceTensorsAreNamed() throws {
        let single = try SafeTensorsFile(path: LoaderFixtures.path("tiny-llama/model.safetensors"))
        var writer = SafeTensorsTestWriter()
        for name in single.tensors.keys.sorted() where name != "model.layers.1.mlp.up_proj.weight" {
            let info = try #require(single.tensors[name])
            writer.tensors.append(SafeTensorsTestWriter.f32(name, shape: info.shape, values: try single.tensorF32(named: name)))
        }
        let scratch = try LoaderScratchDirectory()
        let directory = try scratch.copyFixture("tiny-llama")
        _ = try FileManager.default.removeItem(atPath: directory + "/model.safetensors")
        try Data(writer.bytes()).write(to: URL(fileURLWithPath: directory + "/model.safetensors"))
        #expect(loadError { try ModelLoader.load(path: directory) } == .missingTensor(name: "model.layers.1.mlp.up_proj.weight"))

        let untied = try scratch.copyFixture("tiny-qwen2")
        try replaceText(in: untied + "/config.json", "\"tie_word_embeddings\": true", with: "\"tie_word_embeddings\": false")
        #expect(loadError { try ModelLoader.load(path: untied) } == .missingTensor(name: "lm_head.weight"))
    }

    @Test func malformedConfigNamesTheField() throws {
        let scratch = try LoaderScratchDirectory()
        let directory = try scratch.copyFixture("tiny-qwen3")
        try replaceText(in: directory + "/config.json", "\"hidden_size\": 32", with: "\"hidden_size\": \"32\"")
        guard case .corrupted(let path, let detail)? = loadError({ try ModelLoader.load(path: directory) }) else {
            Issue.record("a string hidden_size was not reported as corrupted")
            return
        }
        #expect(path == directory + "/config.json")
        #expect(detail.contains("hidden_size"))

        let noTokenizer = try scratch.copyFixture("tiny-qwen2")
        try FileManager.default.removeItem(atPath: noTokenizer + "/tokenizer.json")
        #expect(loadError { try ModelLoader.load(path: noTokenizer) } == .fileNotFound(path: noTokenizer + "/tokenizer.json"))
    }

    @Test func unsupportedRopeScalingIsReported() throws {
        let scratch = try LoaderScratchDirectory()
        let directory = try scratch.copyFixture("tiny-llama")
        try replaceText(in: directory + "/config.json", "\"rope_scaling\": null",
                    with: #""rope_scaling": {"type": "yarn", "factor": 4.0}"#)
        #expect(loadError { try HuggingFaceDirectory(path: directory) }
            == .invalidMetadata(key: "rope_scaling", detail: "RoPE scaling 'yarn' is not supported (only llama3)"))
    }
}
