import Foundation

public enum Correlation {
    /// Spearman's rank correlation: Pearson's correlation of the ranks, tied values sharing their
    /// average rank (as `scipy.stats.spearmanr`).
    public static func spearman(_ x: [Double], _ y: [Double]) throws(EvaluationError) -> Double {
        guard x.count == y.count else { throw .lengthMismatch(what: "spearman inputs", first: x.count, second: y.count) }
        guard x.count >= 2 else { throw .tooFewItems(what: "spearman inputs", count: x.count, required: 2) }
        try requireFinite(x, what: "spearman first input")
        try requireFinite(y, what: "spearman second input")
        return try pearson(averageRanks(x), averageRanks(y))
    }

    /// Pearson's product-moment correlation.
    public static func pearson(_ x: [Double], _ y: [Double]) throws(EvaluationError) -> Double {
        guard x.count == y.count else { throw .lengthMismatch(what: "pearson inputs", first: x.count, second: y.count) }
        guard x.count >= 2 else { throw .tooFewItems(what: "pearson inputs", count: x.count, required: 2) }
        let count = Double(x.count)
        let meanX = x.reduce(0, +) / count
        let meanY = y.reduce(0, +) / count
        var covariance = 0.0, varianceX = 0.0, varianceY = 0.0
        for i in x.indices {
            let dx = x[i] - meanX, dy = y[i] - meanY
            covariance += dx * dy
            varianceX += dx * dx
            varianceY += dy * dy
        }
        guard varianceX > 0 else { throw .constantInput(what: "pearson first input") }
        guard varianceY > 0 else { throw .constantInput(what: "pearson second input") }
        // Clamp rounding overshoot, as scipy does.
        return min(1, max(-1, covariance / (varianceX * varianceY).squareRoot()))
    }

    /// 1-based ranks; a run of equal values gets the mean of the ranks it spans.
    public static func averageRanks(_ values: [Double]) -> [Double] {
        let order = values.indices.sorted { values[$0] < values[$1] }
        var ranks = [Double](repeating: 0, count: values.count)
        var start = 0
        while start < order.count {
            var end = start + 1
            while end < order.count, values[order[end]] == values[order[start]] { end += 1 }
            // Positions start..<end hold equal values: ranks start+1 ... end, mean (start + 1 + end) / 2.
            let rank = Double(start + 1 + end) / 2
            for position in start..<end { ranks[order[position]] = rank }
            start = end
        }
        return ranks
    }

    private static func requireFinite(_ values: [Double], what: String) throws(EvaluationError) {
        if let index = values.firstIndex(where: { !$0.isFinite }) { throw .nonFiniteValue(what: what, index: index) }
    }
}

public enum VectorSimilarity {
    /// Cosine similarity accumulated in Double; 0 when either vector is all zeros.
    public static func cosine(_ a: [Float], _ b: [Float]) throws(EvaluationError) -> Double {
        guard a.count == b.count else { throw .lengthMismatch(what: "cosine vectors", first: a.count, second: b.count) }
        var dot = 0.0, normA = 0.0, normB = 0.0
        for i in a.indices {
            let x = Double(a[i]), y = Double(b[i])
            dot += x * y
            normA += x * x
            normB += y * y
        }
        guard normA > 0, normB > 0 else { return 0 }
        return dot / (normA.squareRoot() * normB.squareRoot())
    }
}
