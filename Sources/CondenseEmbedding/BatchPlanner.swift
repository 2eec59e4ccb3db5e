/// Groups sequences into forward batches: longest first, each batch's total tokens within a budget.
/// The model packs a batch without padding, so the budget bounds memory and keeps the GEMMs large;
/// sorting by length keeps long texts together so that short ones are not held back behind them.
public enum BatchPlanner {
    /// Indexes into `lengths`, one array per batch, in processing order. Every index appears once;
    /// a sequence longer than the budget forms a batch of its own.
    public static func plan(lengths: [Int], tokenBudget: Int) -> [[Int]] {
        let order = lengths.indices.sorted { lengths[$0] != lengths[$1] ? lengths[$0] > lengths[$1] : $0 < $1 }
        var batches: [[Int]] = []
        var current: [Int] = []
        var tokens = 0
        for index in order {
            let length = lengths[index]
            if !current.isEmpty, tokens + length > tokenBudget {
                batches.append(current)
                current = []
                tokens = 0
            }
            current.append(index)
            tokens += length
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }
}
