import CondenseModel
import CondenseTokenizer
import Foundation
import Testing

@Suite struct ChatTemplateTests {
    /// `tokenizer.chat_template` of SmolLM2-135M-Instruct (the JSON-decoded form: real newlines).
    static let smolLM2 = """
        {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
        You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
        ' }}{% endif %}{{'<|im_start|>' + message['role'] + '
        ' + message['content'] + '<|im_end|>' + '
        '}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
        ' }}{% endif %}
        """

    /// Qwen2.5-Instruct's template (abridged to its message part; tool calls cut), with a literal default
    /// system prompt, and Qwen3-style expression strings before it.
    static let qwen = """
        {%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\
        {%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\
        {%- endif %}{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\
        {%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
        """

    static let llama3 = """
        {{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' \
        + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}\
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}
        """

    @Test func smolLM2TemplateRendersWithItsDefaultSystemPrompt() throws {
        let template = try ChatTemplate(Self.smolLM2)
        #expect(template.family == .chatML)
        #expect(template.defaultSystemPrompt == "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        // What HF apply_chat_template([{"role": "user", ...}], add_generation_prompt=True) renders.
        #expect(template.render(system: nil, user: "Rewrite: hi") == """
            <|im_start|>system
            You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
            <|im_start|>user
            Rewrite: hi<|im_end|>
            <|im_start|>assistant

            """)
        #expect(template.render(system: "Be brief.", user: "x") == """
            <|im_start|>system
            Be brief.<|im_end|>
            <|im_start|>user
            x<|im_end|>
            <|im_start|>assistant

            """)
        #expect(template.endOfTurn == "<|im_end|>")
    }

    @Test func qwenDefaultSystemPromptSkipsExpressions() throws {
        let template = try ChatTemplate(Self.qwen)
        #expect(template.family == .chatML)
        #expect(template.defaultSystemPrompt == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        let noDefault = try ChatTemplate("{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}")
        #expect(noDefault.defaultSystemPrompt == nil)
        #expect(noDefault.render(system: nil, user: "u") == "<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test func llama3TemplateWritesBOSAndTrimsContent() throws {
        let template = try ChatTemplate(Self.llama3)
        #expect(template.family == .llama3 && template.endOfTurn == "<|eot_id|>")
        #expect(template.render(system: "S ", user: " U\n", bosToken: "<|begin_of_text|>") ==
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    }

    @Test func unknownTemplateIsRejectedByName() {
        let gemma = "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] }}{% endfor %}"
        #expect(throws: GenerationError.unsupportedChatTemplate(excerpt: "'\(gemma)'")) { try ChatTemplate(gemma) }
        #expect("\(GenerationError.unsupportedChatTemplate(excerpt: "'x'"))".contains("'x'"))
    }

    @Test func modelFilesWithoutTemplateFail() throws {
        // The tiny test models are base models: no chat template.
        let path = LoaderFixtures.path("tiny-llama.gguf")
        #expect(throws: GenerationError.missingChatTemplate(path: path)) { try ChatTemplate.load(modelPath: path) }
        let directory = LoaderFixtures.path("tiny-llama")
        #expect(throws: GenerationError.missingChatTemplate(path: directory)) { try ChatTemplate.load(modelPath: directory) }
        #expect(throws: GenerationError.unreadableModel(.fileNotFound(path: "/nonexistent.gguf"))) {
            try ChatTemplate.load(modelPath: "/nonexistent.gguf")
        }
    }

    /// A Hugging Face directory's tokenizer_config.json, with a string or a list of named templates.
    @Test func huggingFaceTemplateIsRead() throws {
        let scratch = try LoaderScratchDirectory()
        for (index, value) in [Self.smolLM2, [["name": "tool_use", "template": "x"], ["name": "default", "template": Self.smolLM2]]]
            .enumerated() {
            let directory = scratch.url.appendingPathComponent("model\(index)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let json = try JSONSerialization.data(withJSONObject: ["chat_template": value])
            try json.write(to: directory.appendingPathComponent("tokenizer_config.json"))
            #expect(try ChatTemplate.load(modelPath: directory.path) == ChatTemplate(Self.smolLM2))
        }
    }

    /// The real GGUF's template is the literal above; its special tokens encode as single ids, and the
    /// stop tokens are <|im_end|> (also the file's EOS).
    @Test(.enabled(if: FileManager.default.fileExists(atPath: Self.smolLM2Path), "SmolLM2-135M-Instruct GGUF absent"))
    func templateOfTheRealModel() throws {
        let template = try ChatTemplate.load(modelPath: Self.smolLM2Path)
        #expect(template.source == Self.smolLM2)
        let tokenizer = try Tokenizer(spec: GGUFFile(path: Self.smolLM2Path).tokenizerSpec())
        let prompt = try template.promptTokens(system: nil, user: "Hello", tokenizer: tokenizer)
        #expect(prompt.first == 1 && prompt.filter { $0 == 1 }.count == 3)  // <|im_start|> x3
        #expect(prompt.filter { $0 == 2 }.count == 2)  // <|im_end|> x2
        #expect(tokenizer.decode(prompt) == template.render(system: nil, user: "Hello"))
        #expect(try template.stopTokens(tokenizer: tokenizer) == [2])
    }

    static let smolLM2Path = LoaderFixtures.packageRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
}
