import CondenseTensor
import Testing

@testable import CondenseEvaluation

@Suite struct MiniBatchKMeansTests {
    static let seeds: [UInt64] = Array(0..<10)

    /// MTEB settings (batch 500, one k-means++ init, no refinement) must reach scikit-learn's
    /// inertia within 1%, averaged over 10 seeds on each side.
    @Test func inertiaMatchesScikitLearnOnFixtures() throws {
        let cases = try Fixtures.load("kmeans.json", as: KMeansCase.self)
        #expect(cases.count == 3)
        for fixture in cases {
            let points = Matrix(rows: fixture.points.count / fixture.features, cols: fixture.features, data: fixture.points)
            let kMeans = MiniBatchKMeans(clusters: fixture.clusters)
            var total = 0.0
            for seed in Self.seeds {
                total += try kMeans.fit(points, seed: seed).inertia
            }
            let mean = total / Double(Self.seeds.count)
            #expect(mean <= fixture.sklearn_mean_inertia * 1.01, "\(fixture.name): \(mean) vs sklearn \(fixture.sklearn_mean_inertia)")
        }
    }

    @Test func reportedInertiaAndLabelsAgreeWithTheCenters() throws {
        let fixture = try #require(try Fixtures.load("kmeans.json", as: KMeansCase.self).first)
        let points = Matrix(rows: fixture.points.count / fixture.features, cols: fixture.features, data: fixture.points)
        let result = try MiniBatchKMeans(clusters: fixture.clusters).fit(points, seed: 3)
        // Recompute nearest centers and inertia by brute force in Double.
        var inertia = 0.0
        for point in 0..<points.rows {
            var best = Double.infinity
            var bestCenter = 0
            for center in 0..<result.centers.rows {
                var distance = 0.0
                for j in 0..<points.cols {
                    let d = Double(points.data[point * points.cols + j]) - Double(result.centers.data[center * points.cols + j])
                    distance += d * d
                }
                if distance < best { best = distance; bestCenter = center }
            }
            inertia += best
            let assigned = result.labels[point]
            if assigned != bestCenter {
                // Only float ties may differ; the assigned center must be as near as the best one.
                var distance = 0.0
                for j in 0..<points.cols {
                    let d = Double(points.data[point * points.cols + j]) - Double(result.centers.data[assigned * points.cols + j])
                    distance += d * d
                }
                #expect(distance <= best * (1 + 1e-4) + 1e-4)
            }
        }
        #expect(abs(result.inertia - inertia) <= inertia * 1e-4)
        #expect(result.steps >= 1)
    }

    @Test func separatedBlobsAreRecovered() throws {
        let fixture = try #require(try Fixtures.load("kmeans.json", as: KMeansCase.self).first { $0.name == "separated_blobs" })
        let points = Matrix(rows: fixture.points.count / fixture.features, cols: fixture.features, data: fixture.points)
        let result = try MiniBatchKMeans(clusters: fixture.clusters).fit(points, seed: 0)
        let score = try VMeasure.score(gold: fixture.labels, predicted: result.labels)
        #expect(score.vMeasure > 0.8)
    }

    @Test func sameSeedGivesSameResultAndSeedsDiffer() throws {
        let fixture = try #require(try Fixtures.load("kmeans.json", as: KMeansCase.self).last)
        let points = Matrix(rows: fixture.points.count / fixture.features, cols: fixture.features, data: fixture.points)
        let kMeans = MiniBatchKMeans(clusters: fixture.clusters)
        let first = try kMeans.fit(points, seed: 5)
        let again = try kMeans.fit(points, seed: 5)
        let other = try kMeans.fit(points, seed: 6)
        #expect(first == again)
        #expect(first.centers != other.centers)
    }

    @Test func lloydRefinementNeverIncreasesInertia() throws {
        let fixture = try #require(try Fixtures.load("kmeans.json", as: KMeansCase.self).first { $0.name == "overlapping_blobs" })
        let points = Matrix(rows: fixture.points.count / fixture.features, cols: fixture.features, data: fixture.points)
        let plain = try MiniBatchKMeans(clusters: fixture.clusters).fit(points, seed: 1)
        let refined = try MiniBatchKMeans(clusters: fixture.clusters, refinementIterations: 20).fit(points, seed: 1)
        #expect(refined.refinementIterations >= 1)
        #expect(refined.inertia <= plain.inertia * (1 + 1e-6))
    }

    @Test func smallInputsAndDegenerateData() throws {
        // Fewer points than a batch: two far-apart groups are split exactly.
        let groupA: [Float] = (0..<10).flatMap { i in [Float(i) * 0.01, 0] }
        let groupB: [Float] = (0..<10).flatMap { i in [100 + Float(i) * 0.01, 50] }
        let points = Matrix(rows: 20, cols: 2, data: groupA + groupB)
        for seed: UInt64 in 0..<5 {
            let result = try MiniBatchKMeans(clusters: 2).fit(points, seed: seed)
            let gold = Array(repeating: 0, count: 10) + Array(repeating: 1, count: 10)
            #expect(abs(try VMeasure.score(gold: gold, predicted: result.labels).vMeasure - 1) < 1e-12)
        }

        // All points identical: any clustering has zero inertia and nothing crashes.
        let same = Matrix(rows: 30, cols: 3, data: [Float](repeating: 1.5, count: 90))
        let flat = try MiniBatchKMeans(clusters: 3).fit(same, seed: 2)
        #expect(flat.inertia < 1e-6)
        #expect(flat.labels.count == 30)

        // One cluster with refinement: the center is the mean.
        let line = Matrix(rows: 3, cols: 1, data: [1, 2, 6])
        let single = try MiniBatchKMeans(clusters: 1, refinementIterations: 1).fit(line, seed: 0)
        #expect(abs(single.centers.data[0] - 3) < 1e-6)
        #expect(abs(single.inertia - 14) < 1e-4)
    }

    @Test func rejectsInvalidInput() {
        let points = Matrix(rows: 2, cols: 2, data: [0, 1, 2, 3])
        #expect(throws: EvaluationError.tooFewItems(what: "k-means points", count: 2, required: 3)) {
            try MiniBatchKMeans(clusters: 3).fit(points, seed: 0)
        }
        #expect(throws: EvaluationError.invalidParameter(name: "clusters", value: "0", expected: ">= 1")) {
            try MiniBatchKMeans(clusters: 0).fit(points, seed: 0)
        }
        #expect(throws: EvaluationError.invalidParameter(name: "batch size", value: "0", expected: ">= 1")) {
            try MiniBatchKMeans(clusters: 1, batchSize: 0).fit(points, seed: 0)
        }
        let withNaN = Matrix(rows: 2, cols: 2, data: [0, 1, .nan, 3])
        #expect(throws: EvaluationError.nonFiniteValue(what: "k-means point 1", index: 0)) {
            try MiniBatchKMeans(clusters: 1).fit(withNaN, seed: 0)
        }
    }
}
