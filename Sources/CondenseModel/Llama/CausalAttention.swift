import CondenseTensor

/// Scaled dot-product causal self-attention of one sequence for the query heads that share one KV head
/// (grouped-query attention), over packed rows: row `i` is at `stride · i` from the given base pointers.
/// The queries may be the last rows of the keys (KV-cached decoding: `pastLength` earlier keys come first).
///
/// Keys are first transposed into `scratch` ([headDim x paddedLength]) so a query's scores against 32
/// keys at a time accumulate in registers over the head dimension (no horizontal sum per key); the
/// weighted sum of values likewise keeps 64 (then 16) output columns in registers while it walks the keys.
/// (Plain `SIMD16` variables: wider SIMD types spill to the stack on every operation.)
struct CausalAttention {
    let headDim: Int
    let scale: Float

    /// Keys scored per step: two 16-lane vectors.
    static let keysPerStep = 32

    /// Floats of scratch space `run` needs for a sequence of `length` tokens.
    static func scratchCount(length: Int, headDim: Int) -> Int {
        let padded = paddedLength(length)
        return headDim * padded + padded
    }

    static func paddedLength(_ length: Int) -> Int {
        (length + keysPerStep - 1) / keysPerStep * keysPerStep
    }

    /// - Parameters:
    ///   - queryCount: query rows; query `i` sees keys `0 ... pastLength + i` (`scratch` must hold
    ///     `scratchCount(length: pastLength + queryCount)`).
    ///   - queries: the group's first query head at row 0; head `t` of the group is `t · headDim` further.
    ///   - keys, values: the shared KV head's columns of key row 0, `keyRowStride` apart.
    ///   - outputs: like `queries`, in the output rows.
    ///   - probabilities: when non-nil, `heads` consecutive [queryCount x keyCount] row-major blocks to store
    ///     the attention probabilities in (zero where causally masked).
    func run(
        queryCount: Int, pastLength: Int, heads: Int, queries: UnsafePointer<Float>, queryRowStride: Int,
        keys: UnsafePointer<Float>, values: UnsafePointer<Float>, keyRowStride: Int,
        outputs: UnsafeMutablePointer<Float>, outputRowStride: Int,
        probabilities: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>
    ) {
        let keyCount = pastLength + queryCount
        let padded = Self.paddedLength(keyCount)
        let keysTransposed = scratch  // [headDim x padded], zero beyond `keyCount`
        let scores = scratch + headDim * padded  // [padded]
        for position in 0..<keyCount {
            let key = keys + position * keyRowStride
            for d in 0..<headDim { keysTransposed[d * padded + position] = key[d] }
        }
        for d in 0..<headDim {
            (keysTransposed + d * padded + keyCount).update(repeating: 0, count: padded - keyCount)
        }

        for head in 0..<heads {
            let query = queries + head * headDim
            for i in 0..<queryCount {
                let visible = pastLength + i + 1
                computeScores(query: query + i * queryRowStride, keysTransposed: keysTransposed, padded: padded,
                              visible: visible, into: scores)
                VectorMath.softmax(scores, count: visible)
                if let probabilities {
                    let row = probabilities + (head * queryCount + i) * keyCount
                    row.update(from: scores, count: visible)
                    (row + visible).update(repeating: 0, count: keyCount - visible)
                }
                weightedValues(scores, visible: visible, values: values, rowStride: keyRowStride,
                               into: outputs + head * headDim + i * outputRowStride)
            }
        }
    }

    /// scores[j] = scale · q·k_j for j < visible, 32 keys per step (extra lanes of the last step unused).
    @inline(__always)
    private func computeScores(
        query: UnsafePointer<Float>, keysTransposed: UnsafePointer<Float>, padded: Int, visible: Int,
        into scores: UnsafeMutablePointer<Float>
    ) {
        var block = 0
        while block < visible {
            var low = Vector(), high = Vector()
            var column = keysTransposed + block
            for d in 0..<headDim {
                let q = Vector(repeating: query[d])
                low.addProduct(q, load(column))
                high.addProduct(q, load(column + width))
                column += padded
            }
            store(low * scale, scores + block)
            store(high * scale, scores + block + width)
            block += Self.keysPerStep
        }
    }

    /// out = Σ_{j < visible} p[j] · v_j, 64 (then 16) output columns per pass over the keys.
    @inline(__always)
    private func weightedValues(
        _ p: UnsafePointer<Float>, visible: Int, values: UnsafePointer<Float>, rowStride: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        var column = 0
        while column + 4 * width <= headDim {
            var a = Vector(), b = Vector(), c = Vector(), d = Vector()
            var value = values + column
            for j in 0..<visible {
                let weight = Vector(repeating: p[j])
                a.addProduct(weight, load(value))
                b.addProduct(weight, load(value + width))
                c.addProduct(weight, load(value + 2 * width))
                d.addProduct(weight, load(value + 3 * width))
                value += rowStride
            }
            store(a, out + column)
            store(b, out + column + width)
            store(c, out + column + 2 * width)
            store(d, out + column + 3 * width)
            column += 4 * width
        }
        while column + width <= headDim {
            var a = Vector()
            var value = values + column
            for j in 0..<visible {
                a.addProduct(Vector(repeating: p[j]), load(value))
                value += rowStride
            }
            store(a, out + column)
            column += width
        }
        while column < headDim {
            var sum: Float = 0
            for j in 0..<visible { sum += p[j] * values[j * rowStride + column] }
            out[column] = sum
            column += 1
        }
    }
}

private typealias Vector = VectorMath.Vector
private let width = VectorMath.width

@inline(__always)
private func load(_ pointer: UnsafePointer<Float>) -> Vector {
    UnsafeRawPointer(pointer).loadUnaligned(as: Vector.self)
}

@inline(__always)
private func store(_ value: Vector, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: Vector.self)
}
