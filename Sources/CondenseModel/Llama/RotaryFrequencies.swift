import Foundation

/// RoPE inverse frequencies θᵢ = theta^(−2i/headDim), i < headDim/2, with Llama 3.x frequency-dependent
/// scaling when configured (as HF `_compute_llama3_parameters`): long wavelengths are divided by
/// `factor`, short ones kept, and the band in between interpolated smoothly.
public enum RotaryFrequencies {
    public static func inverse(headDim: Int, theta: Float, scaling: Llama3RopeScaling?) -> [Double] {
        let base = (0..<(headDim / 2)).map { 1 / pow(Double(theta), Double(2 * $0) / Double(headDim)) }
        guard let scaling else { return base }
        let factor = Double(scaling.factor)
        let low = Double(scaling.lowFreqFactor), high = Double(scaling.highFreqFactor)
        let originalContext = Double(scaling.originalMaxPositionEmbeddings)
        let lowFrequencyWavelength = originalContext / low
        let highFrequencyWavelength = originalContext / high
        return base.map { frequency in
            let wavelength = 2 * Double.pi / frequency
            if wavelength < highFrequencyWavelength { return frequency }
            if wavelength > lowFrequencyWavelength { return frequency / factor }
            let smooth = (originalContext / wavelength - low) / (high - low)
            return (1 - smooth) * frequency / factor + smooth * frequency
        }
    }
}
