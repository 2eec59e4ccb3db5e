import CondenseEmbedding
import Testing

@Suite struct PromptTemplateTests {
    @Test func namedPromptsHaveTheReferenceTextsInOrder() throws {
        let expected: [(String, String)] = [
            ("none", "{text}"),
            ("eol", "This sentence: \"{text}\" means in one word:"),
            ("cluster1", "This sentence: \"{text}\" belongs to the following cluster:"),
            ("cluster2", "Cluster the text: {text}"),
            ("sum", "This sentence: \"{text}\" can be summarized as"),
            ("pcot", "After thinking step by step, this sentence: \"{text}\" means in one word"),
            ("classification", "This sentence : \"{text}\" can be classified as:"),
            ("question", "Which cluster would you assign the sentence: \"{text}\" to?"),
            ("emotion", "Classify the emotion expressed in the given Twitter \"{text}\" into one of the six emotions: anger, fear, joy, love, sadness, and surprise"),
        ]
        #expect(PromptTemplate.named.map(\.name) == expected.map(\.0))
        #expect(PromptTemplate.named.map(\.template) == expected.map(\.1))
        for (name, template) in expected {
            let prompt = try PromptTemplate(nameOrTemplate: name)
            #expect(prompt.name == name)
            #expect(prompt.template == template)
            #expect(prompt.apply(to: "X") == template.replacingOccurrences(of: "{text}", with: "X"))
        }
    }

    @Test func userTemplateWithOnePlaceholderIsAccepted() throws {
        let prompt = try PromptTemplate(nameOrTemplate: "Query: {text} (end)")
        #expect(prompt.name == nil)
        #expect(prompt.prefix == "Query: ")
        #expect(prompt.suffix == " (end)")
        #expect(prompt.apply(to: "cats") == "Query: cats (end)")
    }

    @Test(arguments: [("Embed this", 0), ("{text} and {text}", 2), ("cluster3", 0)])
    func templateWithoutExactlyOnePlaceholderIsRejected(template: String, count: Int) {
        #expect(throws: EmbeddingError.invalidPromptTemplate(template: template, placeholderCount: count)) {
            try PromptTemplate(nameOrTemplate: template)
        }
        let message = EmbeddingError.invalidPromptTemplate(template: template, placeholderCount: count).description
        for name in PromptTemplate.namedPromptNames { #expect(message.contains(name)) }
        #expect(message.contains(template))
    }
}
