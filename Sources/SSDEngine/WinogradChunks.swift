import CWinograd

/// The parallel loops of `WinogradConvolution`: each transforms one chunk of tiles (or all the
/// filters) with the per-tile kernels of WinogradTransforms.swift, spread over `parallelFor`.

extension WinogradConvolution {
    /// biasGrad[c] += Σ over batch and pixels of the output gradient of channel c.
    func addBiasGradient(_ dy: UnsafePointer<Float>, into biasGrad: UnsafeMutablePointer<Float>) {
        let g = forwardGeometry
        let plane = g.outHeight * g.outWidth
        let block = g.outLayout.channelBlock
        if block % 8 == 0 {
            // Eight channels per pixel: sum whole vectors, one pass over each block's plane.
            ComputeThreads.run(g.outChannels / 8, minimumPerThread: 2) { range in
                for group in range {
                    var sum = SIMD8<Double>()
                    for n in 0..<g.batch {
                        let base = g.outLayout.channelBase(n: n, c: group * 8, channels: g.outChannels, plane: plane).base
                        var s = F8()
                        for i in 0..<plane { s += UnsafeRawPointer(dy + base + i * block).loadUnaligned(as: F8.self) }
                        for lane in 0..<8 { sum[lane] += Double(s[lane]) }
                    }
                    for lane in 0..<8 { biasGrad[group * 8 + lane] += Float(sum[lane]) }
                }
            }
            return
        }
        ComputeThreads.run(g.outChannels, minimumPerThread: 8) { range in
            for c in range {
                var sum: Double = 0
                for n in 0..<g.batch {
                    let (base, step) = g.outLayout.channelBase(n: n, c: c, channels: g.outChannels, plane: plane)
                    var s: Float = 0
                    for i in 0..<plane { s += dy[base + i * step] }
                    sum += Double(s)
                }
                biasGrad[c] += Float(sum)
            }
        }
    }

    /// V_ξ[t][c] for the tiles `tiles` of `source` (the geometry's input): 36 matrices
    /// [chunk × rowStride], row t − tiles.lowerBound.
    func transformInputs(_ g: WinogradGeometry, source: UnsafePointer<Float>, tiles: Range<Int>,
                         into v: UnsafeMutablePointer<Float>, rowStride: Int, matrixStride: Int) {
        ComputeThreads.run(tiles.count, minimumPerThread: 4) { range in
            withUnsafeTemporaryAllocation(of: F8.self, capacity: 3 * 36) { buf in
                let d = buf.baseAddress!, t = d + 36, r = t + 36
                let fast = coefficients.avx2 && g.inLayout.channelBlock % 8 == 0
                let block = g.inLayout.channelBlock, plane = g.inHeight * g.inWidth
                for local in range {
                    let (n, oy, ox) = g.tile(tiles.lowerBound + local)
                    let y0 = oy - g.padH, x0 = ox - g.padW
                    if fast && y0 >= 0 && x0 >= 0 && y0 + 6 <= g.inHeight && x0 + 6 <= g.inWidth {
                        // A whole tile in a blocked layout: straight from memory, prefetching the
                        // next tile of the row (if it is whole too).
                        let hasNext = local + 1 < range.upperBound && x0 + 14 <= g.inWidth
                        for c0 in stride(from: 0, to: g.inChannels, by: 8) {
                            let base = g.inLayout.channelBase(n: n, c: c0, channels: g.inChannels, plane: plane).base
                            let p = source + base + (y0 * g.inWidth + x0) * block
                            cwino_input_tile_avx2(p, g.inWidth * block, block, coefficients.bt, v + local * rowStride + c0,
                                                  matrixStride, hasNext ? p + 4 * block : nil)
                        }
                        continue
                    }
                    for c0 in stride(from: 0, to: g.inChannels, by: 8) {
                        winogradGather(source, channels: g.inChannels, height: g.inHeight, width: g.inWidth,
                                       layout: g.inLayout, n: n, c0: c0, y0: oy - g.padH, x0: ox - g.padW,
                                       rows: 6, cols: 6, into: d)
                        winogradInputTransform(d, coefficients, t, r)
                        let row = UnsafeMutableRawPointer(v + local * rowStride + c0).assumingMemoryBound(to: F8.self)
                        let step = matrixStride / 8
                        for xi in 0..<36 { row[xi * step] = r[xi] }
                    }
                }
            }
        }
    }

    /// Z_ξ[t][c] = (A dY Aᵀ)_ξ for the tiles `tiles` of the output gradient `source` (the
    /// geometry's output), as 36 matrices [chunk × rowStride].
    func transformOutputGradients(_ g: WinogradGeometry, source: UnsafePointer<Float>, tiles: Range<Int>,
                                  into z: UnsafeMutablePointer<Float>, rowStride: Int, matrixStride: Int) {
        ComputeThreads.run(tiles.count, minimumPerThread: 4) { range in
            withUnsafeTemporaryAllocation(of: F8.self, capacity: 16 + 24 + 36) { buf in
                let d = buf.baseAddress!, t = d + 16, r = t + 24
                let fast = coefficients.avx2 && g.outLayout.channelBlock % 8 == 0
                let block = g.outLayout.channelBlock, plane = g.outHeight * g.outWidth
                for local in range {
                    let (n, oy, ox) = g.tile(tiles.lowerBound + local)
                    if fast && oy + 4 <= g.outHeight && ox + 4 <= g.outWidth {
                        for c0 in stride(from: 0, to: g.outChannels, by: 8) {
                            let base = g.outLayout.channelBase(n: n, c: c0, channels: g.outChannels, plane: plane).base
                            cwino_output_grad_tile_avx2(source + base + (oy * g.outWidth + ox) * block, g.outWidth * block,
                                                        block, coefficients.a, z + local * rowStride + c0, matrixStride)
                        }
                        continue
                    }
                    for c0 in stride(from: 0, to: g.outChannels, by: 8) {
                        winogradGather(source, channels: g.outChannels, height: g.outHeight, width: g.outWidth,
                                       layout: g.outLayout, n: n, c0: c0, y0: oy, x0: ox, rows: 4, cols: 4, into: d)
                        winogradOutputAdjoint(d, coefficients, t, r)
                        let row = UnsafeMutableRawPointer(z + local * rowStride + c0).assumingMemoryBound(to: F8.self)
                        let step = matrixStride / 8
                        for xi in 0..<36 { row[xi * step] = r[xi] }
                    }
                }
            }
        }
    }

    /// The outputs of the tiles `tiles` from M (36 matrices [chunk × rowStride]): Aᵀ M A + bias,
    /// ReLU when asked, written into `destination` (the geometry's output).
    func transformOutputs(_ g: WinogradGeometry, source m: UnsafePointer<Float>, tiles: Range<Int>, rowStride: Int,
                          matrixStride: Int, bias: UnsafePointer<Float>?, relu: Bool, destination: UnsafeMutablePointer<Float>) {
        ComputeThreads.run(tiles.count, minimumPerThread: 4) { range in
            withUnsafeTemporaryAllocation(of: F8.self, capacity: 36 + 24 + 16) { buf in
                let d = buf.baseAddress!, t = d + 36, y = t + 24
                let fast = coefficients.avx2 && g.outLayout.channelBlock % 8 == 0
                let block = g.outLayout.channelBlock, plane = g.outHeight * g.outWidth
                for local in range {
                    let (n, oy, ox) = g.tile(tiles.lowerBound + local)
                    if fast && oy + 4 <= g.outHeight && ox + 4 <= g.outWidth {
                        for c0 in stride(from: 0, to: g.outChannels, by: 8) {
                            let base = g.outLayout.channelBase(n: n, c: c0, channels: g.outChannels, plane: plane).base
                            let b: UnsafePointer<Float> = bias.map { $0 + c0 } ?? UnsafePointer(winogradZeros)
                            let out = destination + base + (oy * g.outWidth + ox) * block
                            cwino_output_tile_avx2(m + local * rowStride + c0, matrixStride, coefficients.at, b,
                                                   relu ? 1 : 0, out, g.outWidth * block, block)
                        }
                        continue
                    }
                    for c0 in stride(from: 0, to: g.outChannels, by: 8) {
                        let row = UnsafeRawPointer(m + local * rowStride + c0).assumingMemoryBound(to: F8.self)
                        let step = matrixStride / 8
                        for xi in 0..<36 { d[xi] = row[xi * step] }
                        winogradOutputTransform(d, coefficients, t, y)
                        if let bias {
                            let b = UnsafeRawPointer(bias + c0).assumingMemoryBound(to: F8.self).pointee
                            for i in 0..<16 { y[i] += b }
                        }
                        if relu { for i in 0..<16 { y[i] = y[i].replacing(with: 0, where: y[i] .< 0) } }
                        winogradScatter(y, into: destination, channels: g.outChannels, height: g.outHeight,
                                        width: g.outWidth, layout: g.outLayout, n: n, c0: c0, y0: oy, x0: ox)
                    }
                }
            }
        }
    }
}

/// Eight zeros: the bias of a pass without one.
let winogradZeros: UnsafeMutablePointer<Float> = {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: 8)
    p.initialize(repeating: 0, count: 8)
    return p
}()
