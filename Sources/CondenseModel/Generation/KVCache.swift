/// Keys and values (after RoPE) of the tokens one sequence has seen so far, per layer, so generating a
/// token runs the stack over that token only. Fixed capacity, allocated once; `reset()` reuses it for
/// the next sequence. Not thread-safe: one cache belongs to one generation at a time.
public final class KVCache {
    /// Most tokens the cache holds.
    public let capacity: Int
    /// Tokens stored so far (positions `0..<count`).
    public private(set) var count = 0

    let layerCount: Int
    /// Floats per token row: all KV heads of keys, or of values.
    let rowWidth: Int
    /// Per layer: keys [capacity x rowWidth], then values [capacity x rowWidth].
    private let storage: UnsafeMutablePointer<Float>

    init(config: ModelConfig, capacity: Int) {
        self.capacity = capacity
        layerCount = config.layerCount
        rowWidth = config.kvHeadCount * config.headDim
        storage = .allocate(capacity: max(1, 2 * layerCount * capacity * rowWidth))
    }

    deinit { storage.deallocate() }

    /// Forgets every stored token.
    public func reset() { count = 0 }

    func keys(layer: Int) -> UnsafeMutablePointer<Float> { storage + 2 * layer * capacity * rowWidth }
    func values(layer: Int) -> UnsafeMutablePointer<Float> { keys(layer: layer) + capacity * rowWidth }

    /// Copies the keys and values of `rows` new tokens (starting at `count`) of `layer` from packed
    /// activation rows; `commit` makes them visible once every layer has stored them.
    func store(
        layer: Int, rows: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, sourceRowStride: Int
    ) {
        let keyRows = self.keys(layer: layer) + count * rowWidth, valueRows = self.values(layer: layer) + count * rowWidth
        for row in 0..<rows {
            (keyRows + row * rowWidth).update(from: keys + row * sourceRowStride, count: rowWidth)
            (valueRows + row * rowWidth).update(from: values + row * sourceRowStride, count: rowWidth)
        }
    }

    func commit(rows: Int) { count += rows }
}
