import CondenseTensor
import Dispatch

/// Small vector kernels the training ops need and `VectorMath` does not offer (reductions keep two
/// SIMD accumulators, as plain Swift loops do not vectorise float reductions).
enum Kernels {
    typealias Vector = SIMD16<Float>
    static let width = Vector.scalarCount

    @inline(__always)
    static func load(_ pointer: UnsafePointer<Float>, _ index: Int) -> Vector {
        UnsafeRawPointer(pointer + index).loadUnaligned(as: Vector.self)
    }

    @inline(__always)
    static func store(_ value: Vector, _ pointer: UnsafeMutablePointer<Float>, _ index: Int) {
        UnsafeMutableRawPointer(pointer + index).storeBytes(of: value, as: Vector.self)
    }

    /// Σ a[i]·b[i]·c[i].
    static func tripleDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>, count: Int) -> Float {
        var acc0 = Vector(), acc1 = Vector()
        var i = 0
        while i + 2 * width <= count {
            acc0.addProduct(load(a, i) * load(b, i), load(c, i))
            acc1.addProduct(load(a, i + width) * load(b, i + width), load(c, i + width))
            i += 2 * width
        }
        var sum = (acc0 + acc1).sum()
        while i < count {
            sum += a[i] * b[i] * c[i]
            i += 1
        }
        return sum
    }

    /// Runs `body` over consecutive ranges of 1 Mi elements covering 0..<count, side by side on the cores:
    /// the memory-bound passes over all adapter parameters. The ranges do not depend on the core count, so
    /// neither do the results.
    static func forEachChunk(count: Int, _ body: @Sendable (Range<Int>) -> Void) {
        let chunk = 1 << 20, chunks = (count + chunk - 1) / chunk
        guard chunks > 1 else {
            if count > 0 { body(0..<count) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: chunks) { index in body((index * chunk)..<min(count, (index + 1) * chunk)) }
    }

    /// x[0..<count] = 0, chunks side by side.
    static func zero(_ x: UnsafeMutablePointer<Float>, count: Int) {
        nonisolated(unsafe) let x = x
        forEachChunk(count: count) { range in (x + range.lowerBound).update(repeating: 0, count: range.count) }
    }

    /// Σ x[i]² accumulated in Double (gradient norms over millions of terms, where a Float sum drifts).
    static func sumOfSquaresDouble(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var total: Double = 0
        var i = 0
        while i + width <= count {
            let v = load(x, i)
            total += Double((v * v).sum())
            i += width
        }
        while i < count {
            total += Double(x[i] * x[i])
            i += 1
        }
        return total
    }
}
