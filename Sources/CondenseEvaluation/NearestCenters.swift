import CondenseTensor

/// Nearest-center assignment with one GEMM per block of rows: ‖x − c‖² = ‖x‖² − 2·x·c + ‖c‖².
enum NearestCenters {
    /// Rows per GEMM block in full-data passes: bounds the score buffer to `blockRows x centers`.
    static let blockRows = 2048

    /// Squared L2 norm of each of `rowCount` rows.
    static func squaredNorms(_ rows: UnsafePointer<Float>, rowCount: Int, dimensions: Int) -> [Float] {
        (0..<rowCount).map { VectorMath.sumOfSquares(rows + $0 * dimensions, count: dimensions) }
    }

    /// Assigns each of `rowCount` contiguous rows to its nearest center, writing the label and the
    /// squared distance (clamped at 0 against rounding). `scores` must hold `rowCount x centerCount` floats.
    static func assign(
        rows: UnsafePointer<Float>, rowNorms: UnsafePointer<Float>, rowCount: Int, dimensions: Int,
        centers: UnsafePointer<Float>, centerNorms: UnsafePointer<Float>, centerCount: Int,
        scores: UnsafeMutablePointer<Float>,
        labels: UnsafeMutablePointer<Int>, distances: UnsafeMutablePointer<Float>
    ) {
        GEMM.multiply(
            m: rowCount, n: centerCount, k: dimensions,
            a: rows, lda: dimensions, b: centers, ldb: dimensions, transposeB: true,
            c: scores, ldc: centerCount)
        for row in 0..<rowCount {
            let rowScores = scores + row * centerCount
            var best = 0
            var bestDistance = Float.infinity
            for center in 0..<centerCount {
                let distance = centerNorms[center] - 2 * rowScores[center]
                if distance < bestDistance {
                    bestDistance = distance
                    best = center
                }
            }
            labels[row] = best
            distances[row] = max(0, bestDistance + rowNorms[row])
        }
    }

    /// Labels and total inertia of all points of `points` against `centers` (block-wise).
    static func assignAll(
        points: UnsafePointer<Float>, pointNorms: UnsafePointer<Float>, pointCount: Int, dimensions: Int,
        centers: UnsafePointer<Float>, centerCount: Int,
        labels: UnsafeMutablePointer<Int>
    ) -> Double {
        let centerNorms = squaredNorms(centers, rowCount: centerCount, dimensions: dimensions)
        let block = min(blockRows, pointCount)
        var scores = [Float](repeating: 0, count: block * centerCount)
        var distances = [Float](repeating: 0, count: block)
        var inertia = 0.0
        centerNorms.withUnsafeBufferPointer { centerNorms in
            scores.withUnsafeMutableBufferPointer { scores in
                distances.withUnsafeMutableBufferPointer { distances in
                    guard let centerNorms = centerNorms.baseAddress, let scores = scores.baseAddress,
                        let distances = distances.baseAddress
                    else { return }
                    var start = 0
                    while start < pointCount {
                        let count = min(block, pointCount - start)
                        assign(
                            rows: points + start * dimensions, rowNorms: pointNorms + start, rowCount: count,
                            dimensions: dimensions, centers: centers, centerNorms: centerNorms,
                            centerCount: centerCount, scores: scores, labels: labels + start, distances: distances)
                        for i in 0..<count { inertia += Double(distances[i]) }
                        start += count
                    }
                }
            }
        }
        return inertia
    }
}
