import CondenseEmbedding
import Testing

@Suite struct PoolingMathTests {
    /// Three tokens, two dimensions: rows (1, 2), (3, 4), (5, 6).
    let states: ArraySlice<Float> = [1, 2, 3, 4, 5, 6]

    @Test func meanAveragesAllRows() {
        #expect(PoolingMath.pool(states, width: 2, pooling: .mean, pooledRows: 0..<3) == [3, 4])
    }

    @Test func meanOverTheTextRowsOnly() {
        #expect(PoolingMath.pool(states, width: 2, pooling: .mean, pooledRows: 1..<3) == [4, 5])
    }

    @Test func lastAndEOSTakeTheFinalRow() {
        #expect(PoolingMath.pool(states, width: 2, pooling: .last, pooledRows: 0..<3) == [5, 6])
        #expect(PoolingMath.pool(states, width: 2, pooling: .eos, pooledRows: 0..<1) == [5, 6])
    }

    @Test func weightedMeanUsesSGPTPositionWeights() {
        // w = (1, 2, 3) / 6.
        let pooled = PoolingMath.pool(states, width: 2, pooling: .weightedMean, pooledRows: 0..<3)
        expectClose(pooled, [22.0 / 6, 28.0 / 6])
        // Text rows 1 and 2 keep their positions 2 and 3: w = (2, 3) / 5.
        let textOnly = PoolingMath.pool(states, width: 2, pooling: .weightedMean, pooledRows: 1..<3)
        expectClose(textOnly, [21.0 / 5, 26.0 / 5])
    }

    @Test func poolingWorksAcrossSIMDWidths() {
        // 37 columns: two full 16-lane blocks and a tail.
        let width = 37
        let rows = (0..<(2 * width)).map { Float($0) }
        let pooled = PoolingMath.pool(rows[...], width: width, pooling: .mean, pooledRows: 0..<2)
        expectClose(pooled, (0..<width).map { Float($0) + Float(width) / 2 })
    }

    @Test func normalizeAndDimensions() {
        expectClose(PoolingMath.finish([3, 4], dimensions: nil, normalize: true), [0.6, 0.8])
        #expect(PoolingMath.finish([3, 4, 12], dimensions: 2, normalize: false) == [3, 4])
        // Cutting first, then normalizing the kept part.
        expectClose(PoolingMath.finish([3, 4, 12], dimensions: 2, normalize: true), [0.6, 0.8])
        #expect(PoolingMath.finish([0, 0], dimensions: nil, normalize: true) == [0, 0])
    }
}

func expectClose(_ actual: [Float], _ expected: [Float], tolerance: Float = 1e-5, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, sourceLocation: sourceLocation)
    for (a, e) in zip(actual, expected) where abs(a - e) > tolerance * max(1, abs(e)) {
        Issue.record("\(a) differs from \(e) (tolerance \(tolerance))", sourceLocation: sourceLocation)
        return
    }
}
