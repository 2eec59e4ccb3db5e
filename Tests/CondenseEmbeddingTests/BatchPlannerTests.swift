import CondenseEmbedding
import Testing

@Suite struct BatchPlannerTests {
    @Test func longestFirstWithinTheBudget() {
        let plan = BatchPlanner.plan(lengths: [5, 100, 3, 100, 7], tokenBudget: 120)
        #expect(plan == [[1], [3, 4, 0, 2]])
    }

    @Test func sequenceOverTheBudgetRunsAlone() {
        #expect(BatchPlanner.plan(lengths: [10, 500, 10], tokenBudget: 64) == [[1], [0, 2]])
    }

    @Test func mixOfShortAndVeryLongTextsIsSplitByTokens() {
        // 4 texts of 1,000 tokens among 60 texts of 12 tokens, budget 2,048.
        let lengths = (0..<64).map { $0 % 16 == 5 ? 1_000 : 12 }
        let plan = BatchPlanner.plan(lengths: lengths, tokenBudget: 2_048)
        #expect(plan.count == 3)
        #expect(plan[0] == [5, 21])
        // The rest of the second batch's budget is filled with the first short texts (no padding).
        #expect(plan[1] == [37, 53, 0, 1, 2, 3])
        #expect(plan[2] == Array(4..<64).filter { lengths[$0] == 12 })
        for batch in plan { #expect(batch.map { lengths[$0] }.reduce(0, +) <= 2_048) }
        #expect(plan.flatMap { $0 }.sorted() == Array(0..<64))
    }

    @Test func emptyInputHasNoBatches() {
        #expect(BatchPlanner.plan(lengths: [], tokenBudget: 10).isEmpty)
    }
}
