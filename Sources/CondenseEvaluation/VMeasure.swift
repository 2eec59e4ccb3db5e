import Foundation

/// Homogeneity, completeness and their weighted harmonic mean (V-measure) of a clustering against
/// gold classes, with natural-log entropies as scikit-learn's `homogeneity_completeness_v_measure`.
public struct ClusteringAgreement: Sendable, Equatable {
    public var homogeneity: Double
    public var completeness: Double
    public var vMeasure: Double
}

public enum VMeasure {
    /// Scores `predicted` cluster ids against `gold` class ids (both any integers; only equality matters).
    ///
    /// Conventions follow scikit-learn: with no items every score is 1; a constant gold labelling has
    /// homogeneity 1, a constant prediction has completeness 1; V-measure is 0 when both scores are 0.
    /// `beta` weighs homogeneity (beta < 1) or completeness (beta > 1).
    public static func score(gold: [Int], predicted: [Int], beta: Double = 1) throws(EvaluationError) -> ClusteringAgreement {
        guard gold.count == predicted.count else {
            throw .lengthMismatch(what: "gold and predicted labels", first: gold.count, second: predicted.count)
        }
        guard beta.isFinite, beta >= 0 else {
            throw .invalidParameter(name: "beta", value: "\(beta)", expected: "a finite value >= 0")
        }
        guard !gold.isEmpty else { return ClusteringAgreement(homogeneity: 1, completeness: 1, vMeasure: 1) }

        let classes = DenseLabels(gold)
        let clusters = DenseLabels(predicted)
        var contingency = [Int](repeating: 0, count: classes.count * clusters.count)
        for item in gold.indices {
            contingency[classes.ids[item] * clusters.count + clusters.ids[item]] += 1
        }
        let classSizes = classes.sizes
        let clusterSizes = clusters.sizes
        let total = Double(gold.count)

        let classEntropy = entropy(ofSizes: classSizes, total: total)
        let clusterEntropy = entropy(ofSizes: clusterSizes, total: total)
        // I(C;K) = Σ n_ck/N · log(N·n_ck / (n_c·n_k)).
        var mutualInformation = 0.0
        for c in 0..<classes.count {
            for k in 0..<clusters.count {
                let joint = contingency[c * clusters.count + k]
                guard joint > 0 else { continue }
                let jointCount = Double(joint)
                mutualInformation += jointCount / total
                    * (log(jointCount) + log(total) - log(Double(classSizes[c])) - log(Double(clusterSizes[k])))
            }
        }
        mutualInformation = max(mutualInformation, 0)

        let homogeneity = classEntropy == 0 ? 1 : mutualInformation / classEntropy
        let completeness = clusterEntropy == 0 ? 1 : mutualInformation / clusterEntropy
        let denominator = beta * homogeneity + completeness
        let vMeasure = homogeneity + completeness == 0 ? 0 : (1 + beta) * homogeneity * completeness / denominator
        return ClusteringAgreement(homogeneity: homogeneity, completeness: completeness, vMeasure: vMeasure)
    }

    /// Natural-log entropy of a labelling given its class sizes.
    static func entropy(ofSizes sizes: [Int], total: Double) -> Double {
        guard sizes.count > 1 else { return 0 }
        var result = 0.0
        for size in sizes where size > 0 {
            let fraction = Double(size) / total
            result -= fraction * (log(Double(size)) - log(total))
        }
        return result
    }
}

/// Arbitrary labels mapped to 0..<count in order of first appearance.
public struct DenseLabels: Sendable, Equatable {
    public let ids: [Int]
    public let count: Int

    public init<Label: Hashable>(_ labels: [Label]) {
        var lookup: [Label: Int] = [:]
        var ids: [Int] = []
        ids.reserveCapacity(labels.count)
        for label in labels {
            if let id = lookup[label] {
                ids.append(id)
            } else {
                let id = lookup.count
                lookup[label] = id
                ids.append(id)
            }
        }
        self.ids = ids
        self.count = lookup.count
    }

    /// Number of items per dense id.
    public var sizes: [Int] {
        var sizes = [Int](repeating: 0, count: count)
        for id in ids { sizes[id] += 1 }
        return sizes
    }
}
