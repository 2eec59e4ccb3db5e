import CondenseTensor
import Foundation

/// V-measure of one dataset over several k-means seeds.
public struct ClusteringScore: Sendable, Equatable {
    /// V-measure of each seed's clustering, in seed order.
    public var vMeasures: [Double]
    /// Mean of `vMeasures`.
    public var mean: Double
    /// Population standard deviation of `vMeasures` (NumPy's `np.std`, as MTEB reports).
    public var standardDeviation: Double
    /// Number of items clustered.
    public var items: Int
    /// k: the number of distinct gold labels.
    public var clusters: Int
}

/// The MTEB clustering protocol on one labelled embedding set: embeddings as given (no normalisation),
/// mini-batch k-means with k = number of distinct gold labels and batch size 500, V-measure against
/// the gold labels. MTEB v1 runs k-means once on each of 10 pre-drawn subsets of a dataset and reports
/// the mean and standard deviation over those subsets; our datasets are single sets, so the 10 runs
/// differ by k-means seed (0..<10) instead.
public enum ClusteringProtocol {
    public static let defaultSeeds: [UInt64] = Array(0..<10)
    public static let batchSize = 500

    public static func evaluate(
        embeddings: Matrix, labels: DenseLabels, seeds: [UInt64] = defaultSeeds, refinementIterations: Int = 0
    ) throws(EvaluationError) -> ClusteringScore {
        guard embeddings.rows == labels.ids.count else {
            throw .lengthMismatch(what: "embeddings and labels", first: embeddings.rows, second: labels.ids.count)
        }
        guard !seeds.isEmpty else { throw .tooFewItems(what: "k-means seeds", count: 0, required: 1) }
        let kMeans = MiniBatchKMeans(
            clusters: labels.count, batchSize: batchSize, refinementIterations: refinementIterations)
        var scores: [Double] = []
        for seed in seeds {
            let fit = try kMeans.fit(embeddings, seed: seed)
            scores.append(try VMeasure.score(gold: labels.ids, predicted: fit.labels).vMeasure)
        }
        let (mean, deviation) = meanAndStandardDeviation(scores)
        return ClusteringScore(
            vMeasures: scores, mean: mean, standardDeviation: deviation, items: embeddings.rows, clusters: labels.count)
    }

    /// Mean and population standard deviation; (0, 0) for no values.
    public static func meanAndStandardDeviation(_ values: [Double]) -> (mean: Double, standardDeviation: Double) {
        guard !values.isEmpty else { return (0, 0) }
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
        return (mean, variance.squareRoot())
    }
}
