import Testing

@testable import CondenseEvaluation

@Suite struct VMeasureTests {
    @Test func matchesScikitLearnOnFixtures() throws {
        let cases = try Fixtures.load("vmeasure.json", as: VMeasureCase.self)
        #expect(cases.count >= 10)
        for fixture in cases {
            let score = try VMeasure.score(gold: fixture.labels_true, predicted: fixture.labels_pred)
            #expect(abs(score.homogeneity - fixture.homogeneity) <= 1e-9, "homogeneity of \(fixture.name)")
            #expect(abs(score.completeness - fixture.completeness) <= 1e-9, "completeness of \(fixture.name)")
            #expect(abs(score.vMeasure - fixture.v_measure) <= 1e-9, "v-measure of \(fixture.name)")
        }
    }

    @Test func ignoresLabelNamesAndPermutations() throws {
        let gold = [0, 0, 1, 1, 1, 2, 2, 2, 2]
        let predicted = [1, 1, 1, 0, 0, 2, 2, 0, 2]
        let renamed = predicted.map { [7, -3, 42][$0] }
        let a = try VMeasure.score(gold: gold, predicted: predicted)
        let b = try VMeasure.score(gold: gold, predicted: renamed)
        #expect(a == b)
    }

    @Test func swappingRolesSwapsHomogeneityAndCompleteness() throws {
        let gold = [0, 0, 0, 1, 1, 1]
        let predicted = [0, 0, 1, 2, 2, 3]
        let forward = try VMeasure.score(gold: gold, predicted: predicted)
        let backward = try VMeasure.score(gold: predicted, predicted: gold)
        #expect(abs(forward.homogeneity - backward.completeness) < 1e-15)
        #expect(abs(forward.vMeasure - backward.vMeasure) < 1e-15)
        #expect(forward.homogeneity == 1)
    }

    @Test func emptyLabellingScoresOne() throws {
        let score = try VMeasure.score(gold: [], predicted: [])
        #expect(score == ClusteringAgreement(homogeneity: 1, completeness: 1, vMeasure: 1))
    }

    @Test func rejectsMismatchedLengthsAndNegativeBeta() {
        #expect(throws: EvaluationError.lengthMismatch(what: "gold and predicted labels", first: 2, second: 3)) {
            try VMeasure.score(gold: [0, 1], predicted: [0, 1, 1])
        }
        #expect(throws: EvaluationError.self) { try VMeasure.score(gold: [0, 1], predicted: [0, 1], beta: -1) }
    }

    @Test func denseLabelsNumberByFirstAppearance() {
        let labels = DenseLabels(["b", "a", "b", "c", "a"])
        #expect(labels.ids == [0, 1, 0, 2, 1])
        #expect(labels.count == 3)
        #expect(labels.sizes == [2, 2, 1])
    }
}
