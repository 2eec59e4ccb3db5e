/// Vectorised Float32 kernels over raw buffers, written with `SIMD16<Float>` (AVX-512: one register,
/// AVX2: two). They avoid `pointwiseMin/Max`, `clamped` and `rounded`, which do not lower to single
/// instructions, and keep several accumulators in reductions so FMA latency overlaps.
public enum VectorMath {
    public typealias Vector = SIMD16<Float>
    public static let width = Vector.scalarCount

    @inlinable @inline(__always)
    static func load(_ pointer: UnsafePointer<Float>, _ index: Int) -> Vector {
        UnsafeRawPointer(pointer + index).loadUnaligned(as: Vector.self)
    }

    @inlinable @inline(__always)
    static func store(_ value: Vector, _ pointer: UnsafeMutablePointer<Float>, _ index: Int) {
        UnsafeMutableRawPointer(pointer + index).storeBytes(of: value, as: Vector.self)
    }

    // MARK: Reductions

    /// Σ a[i]·b[i].
    @inlinable
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var acc0 = Vector(), acc1 = Vector()
        var i = 0
        while i + 2 * width <= count {
            acc0.addProduct(load(a, i), load(b, i))
            acc1.addProduct(load(a, i + width), load(b, i + width))
            i += 2 * width
        }
        if i + width <= count {
            acc0.addProduct(load(a, i), load(b, i))
            i += width
        }
        var sum = (acc0 + acc1).sum()
        while i < count {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    /// Σ x[i]².
    @inlinable
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Float {
        dot(x, x, count: count)
    }

    /// Euclidean norm √(Σ x[i]²).
    @inlinable
    public static func l2Norm(_ x: UnsafePointer<Float>, count: Int) -> Float {
        sumOfSquares(x, count: count).squareRoot()
    }

    /// max x[i] (−∞ for an empty buffer).
    @inlinable
    public static func maximum(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var result = -Float.infinity
        var i = 0
        if count >= width {
            var acc = load(x, 0)
            i = width
            while i + width <= count {
                let v = load(x, i)
                acc.replace(with: v, where: v .> acc)
                i += width
            }
            result = acc.max()
        }
        while i < count {
            if x[i] > result { result = x[i] }
            i += 1
        }
        return result
    }

    // MARK: Element-wise

    /// x[i] *= factor.
    @inlinable
    public static func scale(_ x: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
        var i = 0
        while i + width <= count {
            store(load(x, i) * factor, x, i)
            i += width
        }
        while i < count {
            x[i] *= factor
            i += 1
        }
    }

    /// x[i] += y[i].
    @inlinable
    public static func add(_ y: UnsafePointer<Float>, into x: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i + width <= count {
            store(load(x, i) + load(y, i), x, i)
            i += width
        }
        while i < count {
            x[i] += y[i]
            i += 1
        }
    }

    /// x[i] += factor · y[i].
    @inlinable
    public static func addScaled(
        _ y: UnsafePointer<Float>, by factor: Float, into x: UnsafeMutablePointer<Float>, count: Int
    ) {
        let f = Vector(repeating: factor)
        var i = 0
        while i + width <= count {
            var v = load(x, i)
            v.addProduct(f, load(y, i))
            store(v, x, i)
            i += width
        }
        while i < count {
            x[i] += factor * y[i]
            i += 1
        }
    }

    /// RMSNorm: out[i] = x[i] / √(mean(x²) + ε) · weight[i] (HF Llama/Qwen). `out` may alias `x`.
    @inlinable
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, epsilon: Float, count: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        let meanSquare = sumOfSquares(x, count: count) / Float(count)
        let inverse = 1 / (meanSquare + epsilon).squareRoot()
        var i = 0
        while i + width <= count {
            store(load(x, i) * inverse * load(weight, i), out, i)
            i += width
        }
        while i < count {
            out[i] = x[i] * inverse * weight[i]
            i += 1
        }
    }

    /// SwiGLU: out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + e^−g). `out` may alias `gate` or `up`.
    @inlinable
    public static func siluMultiply(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>
    ) {
        var i = 0
        while i + width <= count {
            let g = load(gate, i)
            store(g / (1 + exp(-g)) * load(up, i), out, i)
            i += width
        }
        if i < count {
            var g = Vector(), u = Vector()
            for lane in 0..<(count - i) {
                g[lane] = gate[i + lane]
                u[lane] = up[i + lane]
            }
            let result = g / (1 + exp(-g)) * u
            for lane in 0..<(count - i) { out[i + lane] = result[lane] }
        }
    }

    /// In-place softmax: x[i] = e^(x[i] − max) / Σ e^(x[j] − max).
    @inlinable
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        let peak = maximum(x, count: count)
        let shift = Vector(repeating: peak)
        var total = Vector()
        var i = 0
        while i + width <= count {
            let e = exp(load(x, i) - shift)
            store(e, x, i)
            total += e
            i += width
        }
        if i < count {
            // Tail through one padded vector; padding lanes are −∞ → e^−∞ = 0.
            var tail = Vector(repeating: -.infinity)
            for lane in 0..<(count - i) { tail[lane] = x[i + lane] }
            let e = exp(tail - shift)
            for lane in 0..<(count - i) { x[i + lane] = e[lane] }
            total += e
        }
        scale(x, by: 1 / total.sum(), count: count)
    }

    // MARK: Exponential

    /// e^x per lane, relative error ≤ 2 ulp-ish (Cephes `expf` polynomial); e^x = 0 below −87.33
    /// (including −∞) and is capped at e^88 (no overflow to ∞).
    @inlinable @inline(__always)
    public static func exp(_ x: Vector) -> Vector {
        let upper = Vector(repeating: 88.0)
        let lower = Vector(repeating: -87.33)
        var v = x
        v.replace(with: upper, where: v .> upper)
        let underflow = v .< lower
        v.replace(with: lower, where: underflow)
        // e^v = 2^n · e^r, n = round(v / ln 2), r = v − n ln 2 (ln 2 split for exactness).
        let magic = Vector(repeating: 12_582_912)  // 1.5 · 2^23: adding it rounds to an integer
        let shifted = v * 1.442_695_04 + magic
        let n = shifted - magic
        var r = v - n * 0.693_359_375
        r = r + n * 2.121_944_4e-4
        var p = Vector(repeating: 1.398_199_95e-3).addingProduct(r, 1.987_569_15e-4)
        p = Vector(repeating: 8.333_451_9e-3).addingProduct(p, r)
        p = Vector(repeating: 4.166_579_59e-2).addingProduct(p, r)
        p = Vector(repeating: 1.666_666_55e-1).addingProduct(p, r)
        p = Vector(repeating: 5.000_000_1e-1).addingProduct(p, r)
        p = (r + 1).addingProduct(p, r * r)
        // 2^n from the integer in the low mantissa bits of `shifted`.
        let nBits = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- unsafeBitCast(magic, to: SIMD16<Int32>.self)
        let twoToN = unsafeBitCast((nBits &+ 127) &<< 23, to: Vector.self)
        var result = p * twoToN
        result.replace(with: 0, where: underflow)
        return result
    }

    // MARK: Rotary position embedding

    /// Rotate-half RoPE (HF layout) on one head vector of `2·half` floats, in place:
    /// x[i] ← x[i]·cos[i] − x[i+half]·sin[i],  x[i+half] ← x[i+half]·cos[i] + x[i]·sin[i].
    @inlinable
    public static func rotateHalf(
        _ x: UnsafeMutablePointer<Float>, half: Int, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        let second = x + half
        var i = 0
        while i + width <= half {
            let a = load(x, i), b = load(second, i), c = load(cos, i), s = load(sin, i)
            store(a * c - b * s, x, i)
            store(b * c + a * s, second, i)
            i += width
        }
        while i < half {
            let a = x[i], b = second[i]
            x[i] = a * cos[i] - b * sin[i]
            second[i] = b * cos[i] + a * sin[i]
            i += 1
        }
    }
}
