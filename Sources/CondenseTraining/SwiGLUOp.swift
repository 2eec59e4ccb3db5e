import CondenseTensor

/// SwiGLU: h = silu(g) ⊙ u with silu(g) = g·σ(g), and its gradients
///   ∂L/∂g = ∂L/∂h · u · σ(g)·(1 + g·(1 − σ(g))),   ∂L/∂u = ∂L/∂h · silu(g).
enum SwiGLUOp {
    typealias Vector = Kernels.Vector

    /// hidden = silu(gate) ⊙ up over `count` values.
    static func forward(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int, into hidden: UnsafeMutablePointer<Float>) {
        VectorMath.siluMultiply(gate: gate, up: up, count: count, into: hidden)
    }

    /// Writes ∂L/∂gate and ∂L/∂up; `gateGradient` may alias `hiddenGradient`.
    static func backward(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, hiddenGradient: UnsafePointer<Float>, count: Int,
        gateGradient: UnsafeMutablePointer<Float>, upGradient: UnsafeMutablePointer<Float>
    ) {
        var i = 0
        while i + Kernels.width <= count {
            let g = Kernels.load(gate, i), u = Kernels.load(up, i), dh = Kernels.load(hiddenGradient, i)
            let (dg, du) = derivatives(g, u, dh)
            Kernels.store(dg, gateGradient, i)
            Kernels.store(du, upGradient, i)
            i += Kernels.width
        }
        if i < count {
            var g = Vector(), u = Vector(), dh = Vector()
            for lane in 0..<(count - i) {
                g[lane] = gate[i + lane]
                u[lane] = up[i + lane]
                dh[lane] = hiddenGradient[i + lane]
            }
            let (dg, du) = derivatives(g, u, dh)
            for lane in 0..<(count - i) {
                gateGradient[i + lane] = dg[lane]
                upGradient[i + lane] = du[lane]
            }
        }
    }

    @inline(__always)
    private static func derivatives(_ g: Vector, _ u: Vector, _ dh: Vector) -> (gate: Vector, up: Vector) {
        let sigmoid = 1 / (1 + VectorMath.exp(-g))
        let silu = g * sigmoid
        return (dh * u * sigmoid * (1 + g * (1 - sigmoid)), dh * silu)
    }
}
