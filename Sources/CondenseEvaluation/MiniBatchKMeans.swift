import CondenseTensor
import Foundation

/// Outcome of one k-means fit.
public struct KMeansResult: Sendable, Equatable {
    /// [clusters x dimensions].
    public var centers: Matrix
    /// Cluster of each point, from a final assignment of all points to `centers`.
    public var labels: [Int]
    /// Sum of squared distances of all points to their assigned center.
    public var inertia: Double
    /// Mini-batch steps run before early stopping or the step limit.
    public var steps: Int
    /// Full Lloyd iterations run after the mini-batch phase.
    public var refinementIterations: Int
}

/// Mini-batch k-means as scikit-learn's `MiniBatchKMeans` (the algorithm MTEB's clustering evaluator
/// runs, with `batch_size=500`, `n_init="auto"` = one k-means++ initialisation):
/// - greedy k-means++ (2 + ⌊ln k⌋ candidates per center) on `3 · batchSize` points (at least
///   `3 · clusters`) drawn with replacement, or on all points when there are not more than that;
/// - `maxIterations · n / batchSize` steps; each draws a batch with replacement, assigns it, and moves
///   every center to the running mean of all points it was ever assigned (per-center learning rate
///   1 / count);
/// - every `10 · clusters` sampled points (or when a center has never been assigned), centers whose
///   count is below `reassignmentRatio` × the largest count jump to random batch points;
/// - early stop when the exponentially weighted batch inertia has not improved for
///   `maxNoImprovement` steps;
/// - labels and inertia from a final assignment of all points.
/// `refinementIterations` > 0 adds full Lloyd iterations afterwards (not part of MTEB's protocol).
/// Random draws come from `SeededGenerator`, so results depend only on the seed, but they do not
/// reproduce scikit-learn's (NumPy) random streams.
public struct MiniBatchKMeans: Sendable {
    public var clusters: Int
    public var batchSize: Int
    public var maxIterations: Int
    public var maxNoImprovement: Int
    public var reassignmentRatio: Double
    public var refinementIterations: Int

    public init(
        clusters: Int, batchSize: Int = 500, maxIterations: Int = 100, maxNoImprovement: Int = 10,
        reassignmentRatio: Double = 0.01, refinementIterations: Int = 0
    ) {
        self.clusters = clusters
        self.batchSize = batchSize
        self.maxIterations = maxIterations
        self.maxNoImprovement = maxNoImprovement
        self.reassignmentRatio = reassignmentRatio
        self.refinementIterations = refinementIterations
    }

    /// Clusters the rows of `points`.
    public func fit(_ points: Matrix, seed: UInt64) throws(EvaluationError) -> KMeansResult {
        try validate(points)
        let result: KMeansResult? = points.data.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return nil }
            var run = KMeansRun(configuration: self, points: base, count: points.rows, dimensions: points.cols, seed: seed)
            return run.fit()
        }
        guard let result else { throw .tooFewItems(what: "k-means points", count: 0, required: clusters) }
        return result
    }

    private func validate(_ points: Matrix) throws(EvaluationError) {
        guard clusters >= 1 else { throw .invalidParameter(name: "clusters", value: "\(clusters)", expected: ">= 1") }
        guard batchSize >= 1 else { throw .invalidParameter(name: "batch size", value: "\(batchSize)", expected: ">= 1") }
        guard maxIterations >= 1 else {
            throw .invalidParameter(name: "max iterations", value: "\(maxIterations)", expected: ">= 1")
        }
        guard maxNoImprovement >= 1 else {
            throw .invalidParameter(name: "max no-improvement steps", value: "\(maxNoImprovement)", expected: ">= 1")
        }
        guard reassignmentRatio.isFinite, reassignmentRatio >= 0 else {
            throw .invalidParameter(name: "reassignment ratio", value: "\(reassignmentRatio)", expected: "a finite value >= 0")
        }
        guard refinementIterations >= 0 else {
            throw .invalidParameter(name: "refinement iterations", value: "\(refinementIterations)", expected: ">= 0")
        }
        guard points.cols >= 1 else { throw .invalidParameter(name: "point dimensions", value: "0", expected: ">= 1") }
        guard points.rows >= clusters else {
            throw .tooFewItems(what: "k-means points", count: points.rows, required: clusters)
        }
        if let index = points.data.firstIndex(where: { !$0.isFinite }) {
            throw .nonFiniteValue(what: "k-means point \(index / points.cols)", index: index % points.cols)
        }
    }
}

/// State of one fit over borrowed point storage.
private struct KMeansRun {
    let configuration: MiniBatchKMeans
    let points: UnsafePointer<Float>
    let count: Int
    let dimensions: Int
    let clusters: Int
    var generator: SeededGenerator
    let pointNorms: [Float]

    init(configuration: MiniBatchKMeans, points: UnsafePointer<Float>, count: Int, dimensions: Int, seed: UInt64) {
        self.configuration = configuration
        self.points = points
        self.count = count
        self.dimensions = dimensions
        self.clusters = configuration.clusters
        self.generator = SeededGenerator(seed: seed)
        self.pointNorms = NearestCenters.squaredNorms(points, rowCount: count, dimensions: dimensions)
    }

    mutating func fit() -> KMeansResult {
        let batch = min(configuration.batchSize, count)
        var initSize = 3 * batch
        if initSize < clusters { initSize = 3 * clusters }
        initSize = min(initSize, count)

        // Like scikit-learn, subsample only when the initialisation set is smaller than the data.
        let initIndices = initSize < count ? randomIndices(initSize) : Array(0..<count)
        var centers = kMeansPlusPlus(sampleIndices: initIndices)
        let steps = miniBatchSteps(centers: &centers, batch: batch)

        var labels = [Int](repeating: 0, count: count)
        var inertia = assignAll(centers: centers, labels: &labels)
        var refinements = 0
        while refinements < configuration.refinementIterations {
            refinements += 1
            moveCentersToMeans(&centers, labels: labels)
            var newLabels = [Int](repeating: 0, count: count)
            inertia = assignAll(centers: centers, labels: &newLabels)
            let changed = newLabels != labels
            labels = newLabels
            if !changed { break }
        }
        return KMeansResult(
            centers: Matrix(rows: clusters, cols: dimensions, data: centers), labels: labels, inertia: inertia,
            steps: steps, refinementIterations: refinements)
    }

    // MARK: Initialisation

    private mutating func randomIndices(_ size: Int) -> [Int] {
        (0..<size).map { _ in Int.random(in: 0..<count, using: &generator) }
    }

    /// Copies the rows at `indices` into a contiguous [indices.count x dimensions] buffer.
    private func gather(_ indices: [Int]) -> [Float] {
        var rows = [Float](repeating: 0, count: indices.count * dimensions)
        rows.withUnsafeMutableBufferPointer { rows in
            guard let rows = rows.baseAddress else { return }
            for (position, index) in indices.enumerated() {
                (rows + position * dimensions).update(from: points + index * dimensions, count: dimensions)
            }
        }
        return rows
    }

    /// Greedy k-means++ over the rows at `sampleIndices`: each new center is the best (lowest
    /// potential) of 2 + ⌊ln k⌋ candidates drawn with probability proportional to D².
    private mutating func kMeansPlusPlus(sampleIndices: [Int]) -> [Float] {
        let sample = gather(sampleIndices)
        let sampleCount = sampleIndices.count
        let sampleNorms = sampleIndices.map { pointNorms[$0] }
        let trials = 2 + Int(log(Double(clusters)))
        var centers = [Float](repeating: 0, count: clusters * dimensions)

        let first = Int.random(in: 0..<sampleCount, using: &generator)
        var closest = squaredDistances(from: [first], sample: sample, sampleNorms: sampleNorms, sampleCount: sampleCount)
        var potential = closest.reduce(0.0) { $0 + Double($1) }
        copyRow(first, of: sample, toCenter: 0, of: &centers)

        var cumulative = [Double](repeating: 0, count: sampleCount)
        var merged = [Float](repeating: 0, count: sampleCount)
        for center in 1..<clusters {
            var running = 0.0
            for i in 0..<sampleCount {
                running += Double(closest[i])
                cumulative[i] = running
            }
            let candidates = (0..<trials).map { _ in
                Self.firstIndex(above: generator.nextUnitInterval() * potential, in: cumulative)
            }
            let distances = squaredDistances(
                from: candidates, sample: sample, sampleNorms: sampleNorms, sampleCount: sampleCount)
            var bestTrial = 0
            var bestPotential = Double.infinity
            for trial in 0..<trials {
                var trialPotential = 0.0
                let row = trial * sampleCount
                for i in 0..<sampleCount { trialPotential += Double(min(closest[i], distances[row + i])) }
                if trialPotential < bestPotential {
                    bestPotential = trialPotential
                    bestTrial = trial
                }
            }
            let row = bestTrial * sampleCount
            for i in 0..<sampleCount { merged[i] = min(closest[i], distances[row + i]) }
            swap(&closest, &merged)
            potential = bestPotential
            copyRow(candidates[bestTrial], of: sample, toCenter: center, of: &centers)
        }
        return centers
    }

    /// First index whose cumulative mass exceeds `target` (D² sampling); the last index when rounding
    /// leaves `target` at or above the total.
    private static func firstIndex(above target: Double, in cumulative: [Double]) -> Int {
        var low = 0, high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] > target { high = middle } else { low = middle + 1 }
        }
        return low
    }

    /// [rows.count x sampleCount] squared distances from the sample rows `rows` to every sample row.
    private func squaredDistances(from rows: [Int], sample: [Float], sampleNorms: [Float], sampleCount: Int) -> [Float] {
        var candidates = [Float](repeating: 0, count: rows.count * dimensions)
        for (position, row) in rows.enumerated() {
            for j in 0..<dimensions { candidates[position * dimensions + j] = sample[row * dimensions + j] }
        }
        var distances = [Float](repeating: 0, count: rows.count * sampleCount)
        candidates.withUnsafeBufferPointer { candidates in
            sample.withUnsafeBufferPointer { sample in
                distances.withUnsafeMutableBufferPointer { distances in
                    guard let a = candidates.baseAddress, let b = sample.baseAddress, let c = distances.baseAddress
                    else { return }
                    GEMM.multiply(
                        m: rows.count, n: sampleCount, k: dimensions,
                        a: a, lda: dimensions, b: b, ldb: dimensions, transposeB: true, c: c, ldc: sampleCount)
                }
            }
        }
        for (position, row) in rows.enumerated() {
            let base = position * sampleCount
            for i in 0..<sampleCount {
                distances[base + i] = max(0, sampleNorms[row] - 2 * distances[base + i] + sampleNorms[i])
            }
        }
        return distances
    }

    private func copyRow(_ row: Int, of rows: [Float], toCenter center: Int, of centers: inout [Float]) {
        for j in 0..<dimensions { centers[center * dimensions + j] = rows[row * dimensions + j] }
    }

    // MARK: Mini-batch phase

    /// Runs the mini-batch updates on `centers`; returns the number of steps taken.
    private mutating func miniBatchSteps(centers: inout [Float], batch: Int) -> Int {
        let stepLimit = max(1, configuration.maxIterations * count / batch)
        var counts = [Double](repeating: 0, count: clusters)
        var batchSums = [Float](repeating: 0, count: clusters * dimensions)
        var batchCounts = [Int](repeating: 0, count: clusters)
        var scores = [Float](repeating: 0, count: batch * clusters)
        var batchLabels = [Int](repeating: 0, count: batch)
        var batchDistances = [Float](repeating: 0, count: batch)
        var batchRows = [Float](repeating: 0, count: batch * dimensions)
        var batchNorms = [Float](repeating: 0, count: batch)
        var sampledSinceReassignment = 0
        var smoothedInertia: Double? = nil
        var bestSmoothedInertia: Double? = nil
        var stepsWithoutImprovement = 0
        // Weight of one batch in the running inertia average, as scikit-learn.
        let smoothing = min(1, Double(batch) * 2 / Double(count + 1))

        var step = 0
        while step < stepLimit {
            step += 1
            for position in 0..<batch {
                let index = Int.random(in: 0..<count, using: &generator)
                batchNorms[position] = pointNorms[index]
                for j in 0..<dimensions { batchRows[position * dimensions + j] = points[index * dimensions + j] }
            }
            sampledSinceReassignment += batch
            var reassign = false
            if counts.contains(0) || sampledSinceReassignment >= 10 * clusters {
                sampledSinceReassignment = 0
                reassign = true
            }

            let centerNorms = centers.withUnsafeBufferPointer { centers in
                centers.baseAddress.map { NearestCenters.squaredNorms($0, rowCount: clusters, dimensions: dimensions) } ?? []
            }
            batchRows.withUnsafeBufferPointer { rows in
                batchNorms.withUnsafeBufferPointer { norms in
                    centers.withUnsafeBufferPointer { centerValues in
                        centerNorms.withUnsafeBufferPointer { centerNorms in
                            scores.withUnsafeMutableBufferPointer { scores in
                                batchLabels.withUnsafeMutableBufferPointer { labels in
                                    batchDistances.withUnsafeMutableBufferPointer { distances in
                                        guard let rows = rows.baseAddress, let norms = norms.baseAddress,
                                            let centerValues = centerValues.baseAddress,
                                            let centerNorms = centerNorms.baseAddress,
                                            let scores = scores.baseAddress, let labels = labels.baseAddress,
                                            let distances = distances.baseAddress
                                        else { return }
                                        NearestCenters.assign(
                                            rows: rows, rowNorms: norms, rowCount: batch, dimensions: dimensions,
                                            centers: centerValues, centerNorms: centerNorms, centerCount: clusters,
                                            scores: scores, labels: labels, distances: distances)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let batchInertia = batchDistances.reduce(0.0) { $0 + Double($1) }

            // Each center moves to the mean of every point ever assigned to it.
            for i in batchSums.indices { batchSums[i] = 0 }
            for i in batchCounts.indices { batchCounts[i] = 0 }
            for position in 0..<batch {
                let label = batchLabels[position]
                batchCounts[label] += 1
                for j in 0..<dimensions { batchSums[label * dimensions + j] += batchRows[position * dimensions + j] }
            }
            for center in 0..<clusters where batchCounts[center] > 0 {
                let previous = Float(counts[center])
                counts[center] += Double(batchCounts[center])
                let updated = Float(counts[center])
                for j in 0..<dimensions {
                    let index = center * dimensions + j
                    centers[index] = (centers[index] * previous + batchSums[index]) / updated
                }
            }
            if reassign, configuration.reassignmentRatio > 0 {
                reassignSparseCenters(&centers, counts: &counts, batchRows: batchRows, batch: batch)
            }

            // Early stopping on the smoothed mean batch inertia; the first step is not counted.
            if step == 1 { continue }
            let meanInertia = batchInertia / Double(batch)
            let smoothed = smoothedInertia.map { $0 * (1 - smoothing) + meanInertia * smoothing } ?? meanInertia
            smoothedInertia = smoothed
            if let best = bestSmoothedInertia, smoothed >= best {
                stepsWithoutImprovement += 1
            } else {
                stepsWithoutImprovement = 0
                bestSmoothedInertia = smoothed
            }
            if stepsWithoutImprovement >= configuration.maxNoImprovement { break }
        }
        return step
    }

    /// Moves centers with very low counts onto random points of the current batch, then lifts their
    /// counts to the smallest remaining count so they are not reassigned again at once.
    private mutating func reassignSparseCenters(
        _ centers: inout [Float], counts: inout [Double], batchRows: [Float], batch: Int
    ) {
        guard let largest = counts.max() else { return }
        let threshold = configuration.reassignmentRatio * largest
        var sparse = (0..<clusters).filter { counts[$0] < threshold }
        let limit = Int(0.5 * Double(batch))
        if sparse.count > limit {
            // Keep only the `limit` lowest counts, as scikit-learn.
            sparse = Array(sparse.sorted { counts[$0] < counts[$1] }.prefix(limit))
        }
        guard !sparse.isEmpty else { return }
        let isSparse = (0..<clusters).map { center in sparse.contains(center) }
        let floorCount = (0..<clusters).filter { !isSparse[$0] }.map { counts[$0] }.min() ?? 0

        // Distinct batch rows, uniformly: a partial Fisher-Yates shuffle.
        var positions = Array(0..<batch)
        for (slot, center) in sparse.enumerated() {
            let pick = Int.random(in: slot..<batch, using: &generator)
            positions.swapAt(slot, pick)
            let source = positions[slot]
            for j in 0..<dimensions { centers[center * dimensions + j] = batchRows[source * dimensions + j] }
            counts[center] = floorCount
        }
    }

    // MARK: Full passes

    private func assignAll(centers: [Float], labels: inout [Int]) -> Double {
        centers.withUnsafeBufferPointer { centers in
            pointNorms.withUnsafeBufferPointer { norms in
                labels.withUnsafeMutableBufferPointer { labels in
                    guard let centers = centers.baseAddress, let norms = norms.baseAddress,
                        let labels = labels.baseAddress
                    else { return 0 }
                    return NearestCenters.assignAll(
                        points: points, pointNorms: norms, pointCount: count, dimensions: dimensions,
                        centers: centers, centerCount: clusters, labels: labels)
                }
            }
        }
    }

    /// Lloyd update: each center becomes the mean of its points; an empty cluster keeps its center.
    private func moveCentersToMeans(_ centers: inout [Float], labels: [Int]) {
        var sums = [Double](repeating: 0, count: clusters * dimensions)
        var sizes = [Int](repeating: 0, count: clusters)
        for point in 0..<count {
            let label = labels[point]
            sizes[label] += 1
            for j in 0..<dimensions { sums[label * dimensions + j] += Double(points[point * dimensions + j]) }
        }
        for center in 0..<clusters where sizes[center] > 0 {
            for j in 0..<dimensions {
                centers[center * dimensions + j] = Float(sums[center * dimensions + j] / Double(sizes[center]))
            }
        }
    }
}
