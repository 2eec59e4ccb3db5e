import CondenseTensor
import Testing

@testable import CondenseEvaluation

@Suite struct ClusteringProtocolTests {
    @Test func populationStandardDeviation() {
        let (mean, deviation) = ClusteringProtocol.meanAndStandardDeviation([2, 4, 4, 4, 5, 5, 7, 9])
        #expect(mean == 5)
        #expect(deviation == 2)
        #expect(ClusteringProtocol.meanAndStandardDeviation([]) == (0, 0))
    }

    @Test func evaluatesTenSeedsWithKFromTheGoldLabels() throws {
        let fixture = try #require(try Fixtures.load("kmeans.json", as: KMeansCase.self).first { $0.name == "separated_blobs" })
        let points = Matrix(rows: fixture.points.count / fixture.features, cols: fixture.features, data: fixture.points)
        let labels = DenseLabels(fixture.labels.map { "class-\($0)" })
        let score = try ClusteringProtocol.evaluate(embeddings: points, labels: labels)
        #expect(score.vMeasures.count == 10)
        #expect(score.clusters == fixture.clusters)
        #expect(score.items == points.rows)
        let expected = ClusteringProtocol.meanAndStandardDeviation(score.vMeasures)
        #expect(score.mean == expected.mean)
        #expect(score.standardDeviation == expected.standardDeviation)
        #expect(score.mean > 0.8)
        // Each run equals a direct fit with that seed.
        let third = try MiniBatchKMeans(clusters: fixture.clusters).fit(points, seed: 2)
        #expect(score.vMeasures[2] == (try VMeasure.score(gold: labels.ids, predicted: third.labels)).vMeasure)
    }

    @Test func rejectsMismatchedEmbeddingsAndLabels() {
        let points = Matrix(rows: 3, cols: 1, data: [0, 1, 2])
        #expect(throws: EvaluationError.lengthMismatch(what: "embeddings and labels", first: 3, second: 2)) {
            try ClusteringProtocol.evaluate(embeddings: points, labels: DenseLabels(["a", "b"]))
        }
    }
}
