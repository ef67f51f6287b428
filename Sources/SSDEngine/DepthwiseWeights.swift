/// The weight gradient of a depthwise convolution (groups = input channels = output channels),
/// for the shapes where oneDNN 2.6 has no depthwise backward-weights kernel (5×5 on both ISAs:
/// it falls back to im2col and GEMM, a large share of an SSDLite training step).
///
///     dW[c, ky, kx] += Σ_n Σ_oy Σ_ox dY[n, c, oy, ox] · X[n, c, oy·s + ky·d − p, ox·s + kx·d − p]
///     db[c] += Σ_n Σ_oy Σ_ox dY[n, c, oy, ox]
///
/// Input and output gradient are read in their own layouts (NCHW or blocked); the weight
/// gradient is (C, 1, kh, kw). Work is split by channel, and each channel's sums run in f32
/// per output row and are gathered in f64, so the result does not depend on the thread count.
enum DepthwiseWeights {
    /// The name `ssd info` lists for it.
    static let implementation = "ours:depthwise_weights"

    static func applies(to s: ConvolutionShape) -> Bool {
        s.groups > 1 && s.groups == s.inChannels && s.groups == s.outChannels
    }

    static func accumulate(_ s: ConvolutionShape, input: UnsafePointer<Float>, inputLayout: ActivationLayout,
                           outputGrad: UnsafePointer<Float>, outputLayout: ActivationLayout,
                           weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?) {
        let channels = s.outChannels, kh = s.kernelHeight, kw = s.kernelWidth
        let inPlane = s.inHeight * s.inWidth, outPlane = s.outHeight * s.outWidth
        parallelFor(channels) { range in
            var taps = [Double](repeating: 0, count: kh * kw)
            for c in range {
                for i in taps.indices { taps[i] = 0 }
                var biasSum = 0.0
                for n in 0..<s.batch {
                    let (xBase, xStep) = inputLayout.channelBase(n: n, c: c, channels: channels, plane: inPlane)
                    let (gBase, gStep) = outputLayout.channelBase(n: n, c: c, channels: channels, plane: outPlane)
                    let x = input + xBase, g = outputGrad + gBase
                    for oy in 0..<s.outHeight {
                        let row = g + oy * s.outWidth * gStep
                        if biasGrad != nil {
                            var sum: Float = 0
                            for ox in 0..<s.outWidth { sum += row[ox * gStep] }
                            biasSum += Double(sum)
                        }
                        for ky in 0..<kh {
                            let iy = oy * s.strideHeight + ky * s.dilationHeight - s.paddingHeight
                            guard iy >= 0 && iy < s.inHeight else { continue }
                            let inRow = x + iy * s.inWidth * xStep
                            for kx in 0..<kw {
                                // Output columns whose input column ox·s + kx·d − p lies inside the row.
                                let offset = kx * s.dilationWidth - s.paddingWidth
                                let first = offset >= 0 ? 0 : (-offset + s.strideWidth - 1) / s.strideWidth
                                let last = min(s.outWidth, (s.inWidth - 1 - offset) / s.strideWidth + 1)
                                guard first < last else { continue }
                                var sum: Float = 0
                                for ox in first..<last {
                                    sum += row[ox * gStep] * inRow[(ox * s.strideWidth + offset) * xStep]
                                }
                                taps[ky * kw + kx] += Double(sum)
                            }
                        }
                    }
                }
                for i in 0..<(kh * kw) { weightGrad[c * kh * kw + i] += Float(taps[i]) }
                biasGrad?[c] += Float(biasSum)
            }
        }
    }
}
