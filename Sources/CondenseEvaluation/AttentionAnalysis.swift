import CondenseTensor
import Foundation

/// The paper's attention analysis: how much attention each input token receives from the final
/// token in the last layer, averaged over heads.
public enum AttentionAnalysis {
    /// From one sequence's last-layer attention, laid out as `ForwardOutput.lastLayerAttention`
    /// ([heads·L x L], row h·L + i = head h, query i), the head-averaged weights of the final query
    /// (position L − 1) over keys 0..<L. They sum to 1 when each head's row does.
    public static func finalTokenAttention(_ attention: Matrix, heads: Int) throws(EvaluationError) -> [Double] {
        guard heads >= 1 else { throw .invalidParameter(name: "heads", value: "\(heads)", expected: ">= 1") }
        let length = attention.cols
        guard length >= 1, attention.rows == heads * length else {
            throw .invalidParameter(
                name: "attention shape", value: "\(attention.rows)x\(attention.cols)",
                expected: "\(heads)·L x L for \(heads) heads")
        }
        var weights = [Double](repeating: 0, count: length)
        for head in 0..<heads {
            let row = (head * length + length - 1) * length
            for key in 0..<length { weights[key] += Double(attention.data[row + key]) }
        }
        return weights.map { $0 / Double(heads) }
    }

    /// A token's decoded text made visible in a table or chart: a leading or trailing space becomes
    /// `␣`, line breaks `↵`, tabs `⇥`, other control characters `\u{XX}`; an empty piece is `∅`.
    public static func readableToken(_ text: String) -> String {
        guard !text.isEmpty else { return "∅" }
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case " ": result += "␣"
            case "\n", "\r": result += "↵"
            case "\t": result += "⇥"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                result += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// A fixed-width text table: position, token, weight, and a bar scaled to the largest weight.
    public static func table(tokens: [String], weights: [Double], barWidth: Int = 40) -> String {
        let largest = weights.max() ?? 0
        let tokenWidth = min(24, max(5, tokens.map(\.count).max() ?? 5))
        var lines = ["  pos  " + "token".padding(toLength: tokenWidth, withPad: " ", startingAt: 0) + "  attention"]
        for (index, weight) in weights.enumerated() {
            let token = index < tokens.count ? tokens[index] : "?"
            let shown = token.count > tokenWidth ? String(token.prefix(tokenWidth - 1)) + "…" : token
            let bar = largest > 0 ? String(repeating: "█", count: Int((weight / largest * Double(barWidth)).rounded())) : ""
            let position = String(index).leftPadded(to: 5)
            lines.append(
                position + "  " + shown.padding(toLength: tokenWidth, withPad: " ", startingAt: 0) + "  "
                    + String(format: "%.4f", weight) + " " + bar)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A standalone SVG bar chart, one vertical bar per token with its label rotated below it.
    public static func svgChart(tokens: [String], weights: [Double], title: String) -> String {
        let barSlot = 22.0, chartHeight = 240.0, left = 60.0, top = 40.0, labelSpace = 120.0
        // Wide enough for the bars and for the title (about 8 px per character at font size 13).
        let width = max(left + barSlot * Double(max(weights.count, 1)) + 20, left + 8 * Double(title.count) + 20)
        let height = top + chartHeight + labelSpace
        let largest = max(weights.max() ?? 0, 1e-12)
        var svg = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(format(width))" height="\(format(height))" \
            viewBox="0 0 \(format(width)) \(format(height))" font-family="monospace" font-size="11">
            <title>\(xmlEscaped(title))</title>
            <rect x="0" y="0" width="\(format(width))" height="\(format(height))" fill="white"/>
            <text x="\(format(left))" y="20" font-size="13">\(xmlEscaped(title))</text>
            <line x1="\(format(left))" y1="\(format(top + chartHeight))" x2="\(format(width - 10))" \
            y2="\(format(top + chartHeight))" stroke="black"/>
            <line x1="\(format(left))" y1="\(format(top))" x2="\(format(left))" y2="\(format(top + chartHeight))" stroke="black"/>
            <text x="\(format(left - 6))" y="\(format(top + 4))" text-anchor="end">\(String(format: "%.3f", largest))</text>
            <text x="\(format(left - 6))" y="\(format(top + chartHeight + 4))" text-anchor="end">0</text>

            """
        for (index, weight) in weights.enumerated() {
            let barHeight = weight / largest * chartHeight
            let x = left + barSlot * Double(index) + 3
            let labelX = x + (barSlot - 6) / 2
            let labelY = top + chartHeight + 8
            let token = index < tokens.count ? tokens[index] : "?"
            svg += """
                <rect x="\(format(x))" y="\(format(top + chartHeight - barHeight))" width="\(format(barSlot - 6))" \
                height="\(format(barHeight))" fill="#3b6ea8"><title>\(index): \(xmlEscaped(token)) \
                \(String(format: "%.4f", weight))</title></rect>
                <text x="\(format(labelX))" y="\(format(labelY))" text-anchor="end" \
                transform="rotate(-60 \(format(labelX)) \(format(labelY)))">\(xmlEscaped(token))</text>

                """
        }
        return svg + "</svg>\n"
    }

    /// Text safe inside XML character data and attribute values; characters XML 1.0 forbids become U+FFFD.
    public static func xmlEscaped(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&apos;"
            case "\t", "\n", "\r": result.unicodeScalars.append(scalar)
            case _ where scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF:
                result += "\u{FFFD}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    private static func format(_ value: Double) -> String { String(format: "%.1f", value) }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
