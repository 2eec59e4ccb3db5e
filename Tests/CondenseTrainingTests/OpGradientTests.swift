import CondenseEmbedding
import CondenseModel
import CondenseTensor
import Foundation
import Testing
@testable import CondenseTraining

/// Finite-difference checks of every op's backward (tolerance: see `GradientCheck`).
@Suite struct OpGradientTests {
    @Test func rmsNormInputGradient() {
        var random = TestRandom(seed: 11)
        let rows = 3, width = 37  // not a multiple of the SIMD width: tails run too
        let x = random.values(rows * width, scale: 2), weight = random.values(width).map { 1 + 0.3 * $0 }
        let r = random.values(rows * width)
        func run(_ x: [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: rows * width), inverse = [Float](repeating: 0, count: rows)
            x.withUnsafeBufferPointer { xp in weight.withUnsafeBufferPointer { w in
                withPointers(&y) { yp in withPointers(&inverse) { ip in
                    RMSNormOp.forward(xp.baseAddress!, weight: w.baseAddress!, epsilon: 1e-5, rows: rows, width: width,
                                      stride: width, into: yp, inverseRMS: ip)
                } }
            } }
            return y + inverse
        }
        let saved = run(x)
        let inverse = Array(saved[(rows * width)...])
        var dx = [Float](repeating: 0, count: rows * width)
        x.withUnsafeBufferPointer { xp in weight.withUnsafeBufferPointer { w in r.withUnsafeBufferPointer { rp in
            inverse.withUnsafeBufferPointer { ip in withPointers(&dx) { d in
                RMSNormOp.backward(input: xp.baseAddress!, weight: w.baseAddress!, inverseRMS: ip.baseAddress!,
                                   outputGradient: rp.baseAddress!, rows: rows, width: width, stride: width, into: d, accumulate: false)
            } }
        } } }
        let error = GradientCheck.relativeError(x, analytic: dx, step: 1e-2) { GradientCheck.project(Array(run($0).prefix(rows * width)), r) }
        #expect(error < GradientCheck.tolerance, "relative error \(error)")
    }

    @Test func ropeBackwardIsTheInverseRotation() {
        let config = TinyModel.config()
        let rope = RopeOp(config: config, positions: 16)
        var random = TestRandom(seed: 12)
        let offsets = [0, 5, 12], heads = 4, headDim = 8, stride = heads * headDim
        let x = random.values(12 * stride), r = random.values(12 * stride)
        func run(_ x: [Float]) -> [Float] {
            var y = x
            withPointers(&y) { rope.apply($0, stride: stride, heads: heads, headDim: headDim, offsets: offsets, inverse: false) }
            return y
        }
        var dx = r
        withPointers(&dx) { rope.apply($0, stride: stride, heads: heads, headDim: headDim, offsets: offsets, inverse: true) }
        let error = GradientCheck.relativeError(x, analytic: dx) { GradientCheck.project(run($0), r) }
        #expect(error < GradientCheck.tolerance, "relative error \(error)")
        // Position 0 of each sequence is not rotated.
        let y = run(x)
        #expect(y[0..<stride] == x[0..<stride])
        #expect(y[(5 * stride)..<(6 * stride)] == x[(5 * stride)..<(6 * stride)])
    }

    @Test func attentionGradientsWithGroupedQueriesAndCausalMask() {
        let op = AttentionOp(heads: 4, kvHeads: 2, headDim: 8, scale: 1 / Float(8).squareRoot())
        let offsets = [0, 3, 8], tokens = 8
        var random = TestRandom(seed: 13)
        let q = random.values(tokens * 32), k = random.values(tokens * 16), v = random.values(tokens * 16)
        let r = random.values(tokens * 32)
        let probabilityCount = op.probabilityOffsets(offsets).last!
        func run(_ q: [Float], _ k: [Float], _ v: [Float]) -> (output: [Float], probabilities: [Float]) {
            var output = [Float](repeating: 0, count: tokens * 32), p = [Float](repeating: 0, count: probabilityCount)
            q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                withPointers(&output) { o in withPointers(&p) { pp in
                    op.forward(queries: qp.baseAddress!, keys: kp.baseAddress!, values: vp.baseAddress!, offsets: offsets,
                               output: o, probabilities: pp, keep: true)
                } }
            } } }
            return (output, p)
        }
        let (_, probabilities) = run(q, k, v)
        var dq = [Float](repeating: 0, count: tokens * 32), dk = [Float](repeating: 0, count: tokens * 16)
        var dv = dk, scratch = [Float](repeating: 0, count: 25)
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            probabilities.withUnsafeBufferPointer { pp in r.withUnsafeBufferPointer { rp in
                withPointers(&dq) { dqp in withPointers(&dk) { dkp in withPointers(&dv) { dvp in withPointers(&scratch) { s in
                    op.backward(queries: qp.baseAddress!, keys: kp.baseAddress!, values: vp.baseAddress!, offsets: offsets,
                                probabilities: pp.baseAddress!, outputGradient: rp.baseAddress!, queryGradient: dqp,
                                keyGradient: dkp, valueGradient: dvp, scratch: s)
                } } } }
            } }
        } } }
        let errorQ = GradientCheck.relativeError(q, analytic: dq) { GradientCheck.project(run($0, k, v).output, r) }
        let errorK = GradientCheck.relativeError(k, analytic: dk) { GradientCheck.project(run(q, $0, v).output, r) }
        let errorV = GradientCheck.relativeError(v, analytic: dv) { GradientCheck.project(run(q, k, $0).output, r) }
        #expect(errorQ < GradientCheck.tolerance, "dQ relative error \(errorQ)")
        #expect(errorK < GradientCheck.tolerance, "dK relative error \(errorK)")
        #expect(errorV < GradientCheck.tolerance, "dV relative error \(errorV)")
        // Causal: the first token of the second sequence attends only to itself, so its output is its value.
        let output = run(q, k, v).output
        for head in 0..<4 {
            let kvHead = head / 2
            for d in 0..<8 { #expect(abs(output[3 * 32 + head * 8 + d] - v[3 * 16 + kvHead * 8 + d]) < 1e-6) }
        }
    }

    @Test func swiGLUGradients() {
        var random = TestRandom(seed: 14)
        let count = 53
        let gate = random.values(count, scale: 4), up = random.values(count), r = random.values(count)
        func run(_ gate: [Float], _ up: [Float]) -> [Float] {
            var h = [Float](repeating: 0, count: count)
            gate.withUnsafeBufferPointer { g in up.withUnsafeBufferPointer { u in withPointers(&h) {
                SwiGLUOp.forward(gate: g.baseAddress!, up: u.baseAddress!, count: count, into: $0)
            } } }
            return h
        }
        var dGate = [Float](repeating: 0, count: count), dUp = dGate
        gate.withUnsafeBufferPointer { g in up.withUnsafeBufferPointer { u in r.withUnsafeBufferPointer { rp in
            withPointers(&dGate) { dg in withPointers(&dUp) { du in
                SwiGLUOp.backward(gate: g.baseAddress!, up: u.baseAddress!, hiddenGradient: rp.baseAddress!, count: count,
                                  gateGradient: dg, upGradient: du)
            } }
        } } }
        let errorGate = GradientCheck.relativeError(gate, analytic: dGate, step: 1e-2) { GradientCheck.project(run($0, up), r) }
        let errorUp = GradientCheck.relativeError(up, analytic: dUp, step: 1e-2) { GradientCheck.project(run(gate, $0), r) }
        #expect(errorGate < GradientCheck.tolerance, "dGate relative error \(errorGate)")
        #expect(errorUp < GradientCheck.tolerance, "dUp relative error \(errorUp)")
    }

    @Test(arguments: [Float(0), 0.3])
    func loraLinearGradients(dropout: Float) {
        var random = TestRandom(seed: 15)
        let rows = 5, inFeatures = 20, outFeatures = 12, rank = 4, scaling: Float = 0.75
        let linear = LoRALinear(weight: Matrix(rows: outFeatures, cols: inFeatures, data: random.values(outFeatures * inFeatures)),
                                bias: random.values(outFeatures))
        let x = random.values(rows * inFeatures), a = random.values(rank * inFeatures), b = random.values(outFeatures * rank)
        let r = random.values(rows * outFeatures)
        let rowKeys = (0..<rows).map { DropoutMask.rowKey(text: $0 / 2, position: $0 % 2) }
        let mask = dropout > 0 ? DropoutMask(probability: dropout, stream: 99) : nil
        var scratch = [Float](repeating: 0, count: LoRALinear.scratchCount(rows: rows, maxInFeatures: inFeatures, rank: rank))
        func run(_ x: [Float], _ a: [Float], _ b: [Float], hidden: inout [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: rows * outFeatures)
            x.withUnsafeBufferPointer { xp in a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
                rowKeys.withUnsafeBufferPointer { keys in withPointers(&y) { yp in withPointers(&hidden) { hp in withPointers(&scratch) { s in
                    let factors = LoRAFactors(a: ap.baseAddress!, b: bp.baseAddress!, gradientA: nil, gradientB: nil,
                                              rank: rank, scaling: scaling, dropout: mask)
                    linear.forward(xp.baseAddress!, rows: rows, into: yp, accumulate: false, adapter: factors,
                                   adapterHidden: hp, rowKeys: keys.baseAddress!, scratch: s)
                } } } }
            } } }
            return y
        }
        func loss(_ x: [Float], _ a: [Float], _ b: [Float]) -> Double {
            var hidden = [Float](repeating: 0, count: rows * rank)
            return GradientCheck.project(run(x, a, b, hidden: &hidden), r)
        }
        var hidden = [Float](repeating: 0, count: rows * rank)
        _ = run(x, a, b, hidden: &hidden)
        var dx = [Float](repeating: 0, count: rows * inFeatures), dA = [Float](repeating: 0, count: rank * inFeatures)
        var dB = [Float](repeating: 0, count: outFeatures * rank)
        x.withUnsafeBufferPointer { xp in a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
            hidden.withUnsafeBufferPointer { hp in r.withUnsafeBufferPointer { rp in rowKeys.withUnsafeBufferPointer { keys in
                withPointers(&dx) { dxp in withPointers(&dA) { dap in withPointers(&dB) { dbp in withPointers(&scratch) { s in
                    let factors = LoRAFactors(a: ap.baseAddress!, b: bp.baseAddress!, gradientA: dap, gradientB: dbp,
                                              rank: rank, scaling: scaling, dropout: mask)
                    linear.backward(input: xp.baseAddress!, adapterHidden: hp.baseAddress!, outputGradient: rp.baseAddress!,
                                    rows: rows, inputGradient: dxp, accumulate: false, adapter: factors,
                                    rowKeys: keys.baseAddress!, scratch: s)
                } } } }
            } } }
        } } }
        let errorX = GradientCheck.relativeError(x, analytic: dx) { loss($0, a, b) }
        let errorA = GradientCheck.relativeError(a, analytic: dA) { loss(x, $0, b) }
        let errorB = GradientCheck.relativeError(b, analytic: dB) { loss(x, a, $0) }
        #expect(errorX < GradientCheck.tolerance, "dX relative error \(errorX)")
        #expect(errorA < GradientCheck.tolerance, "dA relative error \(errorA)")
        #expect(errorB < GradientCheck.tolerance, "dB relative error \(errorB)")
    }

    @Test(arguments: Pooling.allCases)
    func poolingGradientAndInferenceParity(pooling: Pooling) {
        var random = TestRandom(seed: 16)
        let length = 7, width = 19, pooledRows = 2..<6
        let states = random.values(length * width), r = random.values(width)
        func run(_ states: [Float]) -> [Float] {
            var e = [Float](repeating: 0, count: width)
            states.withUnsafeBufferPointer { s in withPointers(&e) {
                PoolingOp.forward(s.baseAddress!, width: width, length: length, pooling: pooling, pooledRows: pooledRows, into: $0)
            } }
            return e
        }
        #expect(run(states) == PoolingMath.pool(states[...], width: width, pooling: pooling, pooledRows: pooledRows))
        var dStates = [Float](repeating: 0, count: length * width)
        r.withUnsafeBufferPointer { rp in withPointers(&dStates) {
            PoolingOp.backward(embeddingGradient: rp.baseAddress!, width: width, length: length, pooling: pooling,
                               pooledRows: pooledRows, into: $0)
        } }
        let error = GradientCheck.relativeError(states, analytic: dStates, samples: length * width) { GradientCheck.project(run($0), r) }
        #expect(error < GradientCheck.tolerance, "relative error \(error)")
    }

    @Test(arguments: [Float(0), 0.3])
    func infoNCEGradients(margin: Float) {
        var random = TestRandom(seed: 17)
        let count = 5, width = 9
        let texts = random.values(count * width), positives = random.values(count * width)
        let loss = InfoNCE(temperature: 0.2, margin: margin)
        let result = loss.evaluate(texts: texts, positives: positives, count: count, width: width)
        let errorTexts = GradientCheck.relativeError(texts, analytic: result.textGradients, step: 1e-3) {
            loss.evaluate(texts: $0, positives: positives, count: count, width: width).loss
        }
        let errorPositives = GradientCheck.relativeError(positives, analytic: result.positiveGradients, step: 1e-3) {
            loss.evaluate(texts: texts, positives: $0, count: count, width: width).loss
        }
        #expect(errorTexts < GradientCheck.tolerance, "text gradient relative error \(errorTexts)")
        #expect(errorPositives < GradientCheck.tolerance, "positive gradient relative error \(errorPositives)")
    }

    @Test func infoNCEValueMatchesTheFormula() {
        // Two orthogonal pairs: cos = 1 on the diagonal, 0 off it.
        let texts: [Float] = [2, 0, 0, 3], positives: [Float] = [1, 0, 0, 5]
        let result = InfoNCE(temperature: 0.5, margin: 0.1).evaluate(texts: texts, positives: positives, count: 2, width: 2)
        let positive = (1 - 0.1) / 0.5, negative = 0.0
        let expected = -positive + log(exp(positive) + exp(negative))
        #expect(abs(result.loss - expected) < 1e-6)
    }
}
