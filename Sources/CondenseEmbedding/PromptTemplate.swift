/// An instruction wrapped around each text before it is embedded: a built-in prompt chosen by name,
/// or a user template holding the placeholder `{text}` exactly once.
public struct PromptTemplate: Sendable, Equatable {
    public static let placeholder = "{text}"

    /// The reference code's prompts, in its order (texts verbatim, `{text}` = the input).
    public static let named: [(name: String, template: String)] = [
        ("none", "{text}"),
        ("eol", #"This sentence: "{text}" means in one word:"#),
        ("cluster1", #"This sentence: "{text}" belongs to the following cluster:"#),
        ("cluster2", "Cluster the text: {text}"),
        ("sum", #"This sentence: "{text}" can be summarized as"#),
        ("pcot", #"After thinking step by step, this sentence: "{text}" means in one word"#),
        ("classification", #"This sentence : "{text}" can be classified as:"#),
        ("question", #"Which cluster would you assign the sentence: "{text}" to?"#),
        ("emotion", #"Classify the emotion expressed in the given Twitter "{text}" into one of the six emotions: anger, fear, joy, love, sadness, and surprise"#),
    ]

    public static var namedPromptNames: [String] { named.map(\.name) }

    /// The identity prompt: the text as it is.
    public static let none = PromptTemplate(validatedName: "none", template: placeholder)

    /// The built-in name, or nil for a user template.
    public let name: String?
    public let template: String
    /// What comes before and after `{text}`.
    public let prefix: String
    public let suffix: String

    /// A built-in name (exact match), else a template that must contain `{text}` exactly once.
    public init(nameOrTemplate: String) throws(EmbeddingError) {
        if let entry = Self.named.first(where: { $0.name == nameOrTemplate }) {
            self.init(validatedName: entry.name, template: entry.template)
            return
        }
        let parts = nameOrTemplate.components(separatedBy: Self.placeholder)
        guard parts.count == 2 else {
            throw .invalidPromptTemplate(template: nameOrTemplate, placeholderCount: parts.count - 1)
        }
        self.init(validatedName: nil, template: nameOrTemplate)
    }

    private init(validatedName: String?, template: String) {
        let parts = template.components(separatedBy: Self.placeholder)
        name = validatedName
        self.template = template
        prefix = parts[0]
        suffix = parts.count > 1 ? parts[1] : ""
    }

    /// The prompted text.
    public func apply(to text: String) -> String { prefix + text + suffix }

    /// Name for messages: the built-in name, or the template quoted.
    public var label: String { name ?? "\"\(template)\"" }

    public static func == (lhs: PromptTemplate, rhs: PromptTemplate) -> Bool {
        lhs.name == rhs.name && lhs.template == rhs.template
    }
}
