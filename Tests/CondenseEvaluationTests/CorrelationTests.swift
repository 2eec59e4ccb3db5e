import Testing

@testable import CondenseEvaluation

@Suite struct CorrelationTests {
    @Test func spearmanMatchesScipyOnFixtures() throws {
        let cases = try Fixtures.load("spearman.json", as: SpearmanCase.self)
        #expect(cases.count == 4)
        for fixture in cases {
            let rho = try Correlation.spearman(fixture.x, fixture.y)
            #expect(abs(rho - fixture.rho) <= 1e-12, "spearman of \(fixture.name): \(rho) vs \(fixture.rho)")
        }
    }

    @Test func tiedValuesShareTheirAverageRank() {
        #expect(Correlation.averageRanks([10, 20, 20, 30]) == [1, 2.5, 2.5, 4])
        #expect(Correlation.averageRanks([3, 1, 3, 3, 2]) == [4, 1, 4, 4, 2])
        #expect(Correlation.averageRanks([]) == [])
    }

    @Test func spearmanRejectsUndefinedInputs() {
        #expect(throws: EvaluationError.constantInput(what: "pearson second input")) {
            try Correlation.spearman([1, 2, 3], [5, 5, 5])
        }
        #expect(throws: EvaluationError.lengthMismatch(what: "spearman inputs", first: 2, second: 1)) {
            try Correlation.spearman([1, 2], [1])
        }
        #expect(throws: EvaluationError.tooFewItems(what: "spearman inputs", count: 1, required: 2)) {
            try Correlation.spearman([1], [1])
        }
        #expect(throws: EvaluationError.nonFiniteValue(what: "spearman second input", index: 1)) {
            try Correlation.spearman([1, 2, 3], [1, .nan, 3])
        }
    }

    @Test func cosineOfKnownVectors() throws {
        #expect(try VectorSimilarity.cosine([1, 0], [0, 3]) == 0)
        #expect(abs(try VectorSimilarity.cosine([1, 2, 3], [2, 4, 6]) - 1) < 1e-15)
        #expect(abs(try VectorSimilarity.cosine([1, 2, 3], [-1, -2, -3]) + 1) < 1e-15)
        #expect(abs(try VectorSimilarity.cosine([1, 1], [1, 0]) - 0.5.squareRoot()) < 1e-15)
        #expect(try VectorSimilarity.cosine([0, 0], [1, 2]) == 0)
        #expect(throws: EvaluationError.self) { try VectorSimilarity.cosine([1], [1, 2]) }
    }
}
