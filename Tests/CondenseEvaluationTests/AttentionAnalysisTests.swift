import CondenseEmbedding
import CondenseModel
import CondenseTensor
import Foundation
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

@testable import CondenseEvaluation

@Suite struct AttentionAnalysisTests {
    @Test func averagesTheFinalQueryRowOverHeads() throws {
        // 2 heads, L = 3: rows h·3 + i. Final query rows are 2 (head 0) and 5 (head 1).
        let attention = Matrix(rows: 6, cols: 3, data: [
            1, 0, 0, 0.5, 0.5, 0, 0.2, 0.3, 0.5,
            1, 0, 0, 0.9, 0.1, 0, 0.6, 0.1, 0.3,
        ])
        let weights = try AttentionAnalysis.finalTokenAttention(attention, heads: 2)
        #expect(weights.count == 3)
        for (actual, expected) in zip(weights, [0.4, 0.2, 0.4]) { #expect(abs(actual - expected) < 1e-7) }
        #expect(throws: EvaluationError.self) { try AttentionAnalysis.finalTokenAttention(attention, heads: 4) }
        #expect(throws: EvaluationError.self) { try AttentionAnalysis.finalTokenAttention(attention, heads: 0) }
    }

    @Test func tokensAreShownReadably() {
        #expect(AttentionAnalysis.readableToken(" the") == "␣the")
        #expect(AttentionAnalysis.readableToken("\n") == "↵")
        #expect(AttentionAnalysis.readableToken("a\tb\u{01}") == "a⇥b\\u{1}")
        #expect(AttentionAnalysis.readableToken("") == "∅")
        #expect(AttentionAnalysis.readableToken("café") == "café")
    }

    @Test func xmlEscapingCoversMarkupAndForbiddenCharacters() {
        #expect(AttentionAnalysis.xmlEscaped("<a href=\"x\">&'</a>") == "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;")
        #expect(AttentionAnalysis.xmlEscaped("bell\u{07}") == "bell\u{FFFD}")
    }

    @Test func svgIsWellFormedXMLWithEveryLabel() throws {
        let tokens = ["This", "␣sentence", ":", "␣\"", "<b>&", "\u{01}", "␣means"]
        let weights = [0.5, 0.1, 0.05, 0.05, 0.1, 0.1, 0.1]
        let svg = AttentionAnalysis.svgChart(tokens: tokens, weights: weights, title: "prompt \"eol\" & <last>")
        let collector = SVGTextCollector()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = collector
        #expect(parser.parse(), "parse error: \(String(describing: parser.parserError))")
        #expect(collector.rootElement == "svg")
        #expect(collector.rectCount == tokens.count + 1)  // background + one bar per token
        for token in tokens where token != "\u{01}" {
            #expect(collector.texts.contains(token), "label \(token) missing")
        }
        #expect(collector.texts.contains("\u{FFFD}"))
    }

    @Test func tableListsEveryToken() {
        let table = AttentionAnalysis.table(tokens: ["A", "␣b"], weights: [0.75, 0.25])
        let lines = table.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[1].contains("A") && lines[1].contains("0.7500"))
        #expect(lines[2].contains("␣b") && lines[2].contains("0.2500"))
    }

    @Test(.enabled(if: TinyModel.present, "tiny model fixture absent"))
    func finalTokenAttentionOfARealForwardPassSumsToOne() throws {
        let embedder = try Embedder.load(modelPath: TinyModel.path)
        let tokens = embedder.tokenizer.encode("the cat sat on the mat", addSpecialTokens: true)
        let output = try embedder.model.forward([tokens], options: ForwardOptions(returnLastLayerAttention: true))
        let attention = try #require(output.lastLayerAttention?.first)
        let weights = try AttentionAnalysis.finalTokenAttention(attention, heads: embedder.model.config.headCount)
        #expect(weights.count == tokens.count)
        #expect(abs(weights.reduce(0, +) - 1) < 1e-4)
        #expect(weights.allSatisfy { $0 >= 0 })
    }
}

/// Collects the root element name, rect count and text content of an XML document.
private final class SVGTextCollector: NSObject, XMLParserDelegate {
    var rootElement: String?
    var rectCount = 0
    var texts: [String] = []
    private var current = ""
    private var inText = false

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        if rootElement == nil { rootElement = name }
        if name == "rect" { rectCount += 1 }
        if name == "text" { inText = true; current = "" }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if inText { current += string }
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        if name == "text" {
            texts.append(current)
            inText = false
        }
    }
}
