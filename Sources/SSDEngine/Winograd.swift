import Foundation

/// Winograd F(4×4, 3×3) convolution: our own, for hosts where oneDNN has none (oneDNN 2.6 only
/// ships Winograd for AVX-512), so 3×3 stride-1 layers need not run at the FMA peak of direct
/// convolution.
///
/// Contract (as every `ConvolutionKernel`): `forward` overwrites the output with conv + bias
/// (then max(·, 0) with `fusedReLU`); `backwardData` overwrites the input gradient;
/// `backwardWeights` adds into the weight gradient (Cout, Cin, 3, 3) and the bias gradient.
/// Input and input gradient are in `inputLayout`, output and output gradient in `outputLayout`
/// (`.nchw` or `.blocked(b)` for any b, independently). Any batch, size, channel count and
/// padding. Not thread-safe: one call at a time per kernel (it owns its scratch).
///
/// Algorithm, per chunk of output tiles (4×4 outputs each, over the whole batch):
/// 1. data transform V = Bᵀ d B of each 6×6 input window, stored as 36 matrices [tiles × Cin];
/// 2. 36 GEMMs M_ξ = V_ξ · U_ξ through `gemm.sgemm`, U = G g Gᵀ the filters, transformed all
///    at once as one GEMM with G ⊗ G (stored as 36 matrices [Cout × Cin], used transposed);
/// 3. output transform Y = Aᵀ M A, + bias, ReLU, written in the output layout.
/// The backward data pass is the same machinery on the output gradient with the filters
/// rotated by 180° and Cin/Cout swapped (padding 2 − p); the backward weights pass
/// accumulates dU_ξ = Σ (A dY Aᵀ)_ξᵀ V_ξ over chunks and adds Gᵀ dU G (again one GEMM with
/// G ⊗ G) into the weight gradient. The matrices come from the interpolation points
/// {0, 1, −1, ½, −2, ∞} (see `WinogradMatrices`): measured 2–3× more accurate than Lavin's
/// {0, ±1, ±2, ∞}.
///
/// Chunks keep the Winograd-domain working set (36 × tiles × (Cin + Cout) floats) near the
/// caches instead of materialising the whole image's. With OpenMP (Debian's oneDNN) and at
/// least two chunks per thread, each thread runs whole chunks in private scratch; otherwise
/// the team shares each chunk (transforms split by tiles, the 36 GEMMs spread over threads).
/// Transforms run as AVX2 + FMA C code where the CPU has it (CWinograd), portable Swift
/// SIMD elsewhere. Scratch is planned at the first call of each pass and reused, so later
/// calls do not allocate.
public final class WinogradConvolution: ConvolutionKernel {
    public let shape: ConvolutionShape
    public let inputLayout: ActivationLayout
    public let outputLayout: ActivationLayout
    public let fusedReLU: Bool
    public var fusedActivation: ActivationFunction? { fusedReLU ? .relu : nil }
    public let implementation: String
    /// Tiles per chunk (over the whole batch) of the forward pass.
    public let tilesPerChunk: Int
    /// Tiles per chunk of the backward-data pass.
    public let tilesPerChunkBackwardData: Int
    /// Tiles per chunk of the backward-weights pass.
    public let tilesPerChunkBackwardWeights: Int

    private let gemm: Backend
    let coefficients: WinogradCoefficients
    /// Forward geometry: input → output tiles of the output.
    let forwardGeometry: WinogradGeometry
    /// Backward-data geometry: output gradient → tiles of the input gradient.
    let backwardGeometry: WinogradGeometry

    /// Scratch, shared by every kernel of one backend (they run one at a time and keep nothing
    /// in it between calls): sized for the largest layer, not summed over layers.
    private let arena: WinogradArena
    private let failureLock = NSLock()
    private var gemmFailure: Error?              // the first error of a parallel batch of GEMMs

    /// Roughly how many bytes of Winograd-domain data one chunk may hold (V and M together);
    /// chunks hold at least `minimumChunkTiles` tiles all the same.
    /// Measured on Zen 4 (1 MiB L2, 32 MiB L3) with AVX2 dispatch, one thread
    /// (`testBenchmarkAgainstDirect`, SSD_WINOGRAD_CHUNK_KB): 1, 3 and 8 MiB time within noise
    /// at 64–256 channels, 16 MiB is slower at 64 (V and M spill out of L3).
    public static let defaultChunkBytes = 4 << 20
    /// The fewest tiles per chunk: the GEMMs have M = tiles, and below about a hundred rows
    /// dnnl_sgemm spends a large share re-packing U_ξ (1 MiB at 512 channels) for each call —
    /// at 512 channels 16 tiles per chunk ran several times slower than 100.
    public static let minimumChunkTiles = 96
    /// SSD_WINOGRAD_COOPERATIVE=1: never run whole chunks per thread (for timing comparisons).
    static let cooperativeOnly = ProcessInfo.processInfo.environment["SSD_WINOGRAD_COOPERATIVE"] == "1"

    /// A kernel for `shape` (3×3, stride 1, dilation 1 only), `input`/`output` layouts and
    /// optional fused ReLU; the 36 GEMMs per chunk go to `gemm.sgemm`.
    ///
    /// `points` (five distinct finite interpolation points; ∞ is always the sixth) and
    /// `scaling` select the transform matrices (defaults: the most accurate measured);
    /// `chunkBytes` sizes the tile chunks; `portable` keeps to the Swift transforms even where
    /// the CPU has AVX2 + FMA (for tests of that path). Throws `EngineError.invalidArgument` for a shape
    /// Winograd F(4,3) does not apply to, an invalid shape, or a layout whose block does not
    /// divide the channel count.
    public init(_ shape: ConvolutionShape, input: ActivationLayout, output: ActivationLayout, fusedReLU: Bool,
                gemm: Backend, points: [Double]? = nil, scaling: WinogradScaling? = nil,
                chunkBytes: Int = WinogradConvolution.defaultChunkBytes, portable: Bool = false,
                arena: WinogradArena = WinogradArena()) throws {
        try shape.validate()
        guard shape.winogradEligible else {
            throw EngineError.invalidArgument("Winograd F(4,3) needs a dense (groups 1) 3×3 kernel, stride 1 and dilation 1: \(shape)")
        }
        for (layout, channels) in [(input, shape.inChannels), (output, shape.outChannels)] {
            guard layout.channelBlock >= 1, channels % layout.channelBlock == 0 else {
                throw EngineError.invalidArgument("layout \(layout) needs a multiple of \(layout.channelBlock) channels, got \(channels)")
            }
        }
        let pts = points ?? WinogradMatrices.defaultPoints
        guard pts.count == 5, Set(pts).count == 5, pts.allSatisfy({ $0.isFinite }) else {
            throw EngineError.invalidArgument("Winograd F(4,3) needs five distinct finite points, got \(pts)")
        }
        let matrices = WinogradMatrices(points: pts, scaling: scaling ?? WinogradMatrices.defaultScaling)
        self.shape = shape
        inputLayout = input
        outputLayout = output
        self.fusedReLU = fusedReLU
        self.gemm = gemm
        self.arena = arena
        coefficients = WinogradCoefficients(matrices, portable: portable)
        implementation = "winograd F(4,3) (ours, \(matrices), transforms \(coefficients.avx2 ? "avx2" : "portable")"
            + " on \(ComputeThreads.runtime))"
        let s = shape
        forwardGeometry = WinogradGeometry(
            batch: s.batch, inChannels: s.inChannels, inHeight: s.inHeight, inWidth: s.inWidth, inLayout: input,
            outChannels: s.outChannels, outHeight: s.outHeight, outWidth: s.outWidth, outLayout: output,
            padH: s.paddingHeight, padW: s.paddingWidth)
        backwardGeometry = WinogradGeometry(
            batch: s.batch, inChannels: s.outChannels, inHeight: s.outHeight, inWidth: s.outWidth, inLayout: output,
            outChannels: s.inChannels, outHeight: s.inHeight, outWidth: s.inWidth, outLayout: input,
            padH: 2 - s.paddingHeight, padW: 2 - s.paddingWidth)
        func chunk(_ g: WinogradGeometry) -> Int {
            let perTile = 36 * MemoryLayout<Float>.stride * (roundUp8(g.inChannels) + roundUp8(g.outChannels))
            return max(1, min(g.tiles, max(WinogradConvolution.minimumChunkTiles, chunkBytes / perTile)))
        }
        tilesPerChunk = chunk(forwardGeometry)
        tilesPerChunkBackwardData = chunk(backwardGeometry)
        // The weight gradient accumulates dU (36·Cin·Cout floats) once per chunk, read and
        // written; the chunk's V and Z hold 36·tiles·(Cin + Cout). The two balance at about
        // 2·Cin·Cout / (Cin + Cout) tiles; capped at 256 (37 MiB of scratch at 512 channels).
        let balanced = 2 * s.inChannels * s.outChannels / (s.inChannels + s.outChannels)
        tilesPerChunkBackwardWeights = max(1, min(forwardGeometry.tiles, max(tilesPerChunk, min(balanced, 256))))
    }

    deinit {
        coefficients.deallocate()
    }

    public func forward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        output: UnsafeMutablePointer<Float>) throws {
        let s = shape
        let u = try transformFilters(weight, kron: coefficients.kron)
        let b = arena.paddedBias.reserve(roundUp8(s.outChannels))
        b.update(repeating: 0, count: roundUp8(s.outChannels))
        if let bias { b.update(from: bias, count: s.outChannels) }
        // U_ξ is [Cout × Cin]: the pass multiplies by its transpose.
        try run(forwardGeometry, chunk: tilesPerChunk, source: input, filters: u, filtersTransposed: true, bias: b,
                relu: fusedReLU, destination: output)
    }

    public func backwardData(outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                             inputGrad: UnsafeMutablePointer<Float>) throws {
        // Filters of the transposed convolution: taps rotated by 180° (the rotated G ⊗ G) and
        // (Cin, Cout) swapped. U_ξ [Cout × Cin] would already be the pass's [in × out], but
        // dnnl_sgemm runs these shapes (M = tiles ≈ 100, N = K = 512) about 1.5× faster with a
        // transposed B (measured on AVX2: 91 against 63 GFLOP/s), so the filters are first
        // copied as (Cin, Cout, 3, 3) — a tenth of U's size — and transformed to U_ξ [Cin × Cout].
        let s = shape
        let swapped = arena.swappedWeights.reserve(s.inChannels * s.outChannels * 9)
        ComputeThreads.run(s.inChannels, minimumPerThread: 4) { range in
            for ci in range {
                for co in 0..<s.outChannels {
                    (swapped + (ci * s.outChannels + co) * 9).update(from: weight + (co * s.inChannels + ci) * 9, count: 9)
                }
            }
        }
        let u = try transformFilters(UnsafePointer(swapped), kron: coefficients.kronRotated)
        try run(backwardGeometry, chunk: tilesPerChunkBackwardData, source: outputGrad, filters: u,
                filtersTransposed: true, bias: nil, relu: false, destination: inputGrad)
    }

    public func backwardWeights(input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?) throws {
        let g = forwardGeometry, s = shape
        let chunk = tilesPerChunkBackwardWeights
        let ldV = roundUp8(g.inChannels), ldZ = roundUp8(g.outChannels)
        let pairs = s.inChannels * s.outChannels
        let strideV = winogradMatrixStride(chunk, ldV), strideZ = winogradMatrixStride(chunk, ldZ)
        let v = arena.winogradData.reserve(36 * strideV)
        let z = arena.winogradResult.reserve(36 * strideZ)
        let du = arena.filterGrad.reserve(36 * pairs)
        var first = true
        for start in stride(from: 0, to: g.tiles, by: chunk) {
            let count = min(chunk, g.tiles - start)
            transformInputs(g, source: input, tiles: start..<start + count, into: v, rowStride: ldV, matrixStride: strideV)
            transformOutputGradients(g, source: outputGrad, tiles: start..<start + count, into: z, rowStride: ldZ,
                                     matrixStride: strideZ)
            // dU_ξ (Cout × Cin) (+)= Z_ξᵀ V_ξ: the first chunk overwrites, so dU needs no clearing.
            // Parts split the Cout rows of dU_ξ.
            let beta: Float = first ? 0 : 1
            try gemms(rows: s.outChannels) { xi, r in
                try gemm.sgemm(transA: true, transB: false, m: r.count, n: s.inChannels, k: count, alpha: 1,
                               a: z + xi * strideZ + r.lowerBound, lda: ldZ, b: v + xi * strideV, ldb: ldV,
                               beta: beta, c: du + xi * pairs + r.lowerBound * s.inChannels, ldc: s.inChannels)
            }
            first = false
        }
        // weightGrad ((Cout·Cin) × 9) += dUᵀ ((Cout·Cin) × 36) · (G ⊗ G) (36 × 9): the adjoint of the
        // filter transform for every filter at once.
        try gemm.sgemm(transA: true, transB: false, m: pairs, n: 9, k: 36, alpha: 1, a: du, lda: pairs,
                       b: coefficients.kron, ldb: 9, beta: 1, c: weightGrad, ldc: 9)
        if let biasGrad { addBiasGradient(outputGrad, into: biasGrad) }
    }

    /// U (36 × (O·I), i.e. 36 matrices [O × I]) = `kron` (36 × 9) · weightᵀ for `weight` (O, I, 3, 3): the filter
    /// transform of all filters as one GEMM (memory-bound; per-filter gathers of OIHW weights in
    /// groups of eight took several times longer at 512 channels).
    private func transformFilters(_ weight: UnsafePointer<Float>, kron: UnsafePointer<Float>) throws -> UnsafeMutablePointer<Float> {
        let pairs = shape.inChannels * shape.outChannels
        let u = arena.filters.reserve(36 * pairs)
        try gemm.sgemm(transA: false, transB: true, m: 36, n: pairs, k: 9, alpha: 1, a: kron, lda: 9, b: weight, ldb: 9,
                       beta: 0, c: u, ldc: pairs)
        return u
    }

    // MARK: - Passes

    /// Runs `body(ξ, rows)` for the 36 GEMMs of a chunk, each over all of `rows` or over a part.
    ///
    /// With OpenMP, all of them share one parallel region, each GEMM single-threaded (oneDNN
    /// does not nest regions), instead of 36 regions of oneDNN-threaded GEMMs: the GEMMs are
    /// independent, and every region costs a fork and a barrier — on a loaded host a barrier
    /// whose threads are descheduled costs a whole time slice (measured: seconds per call on a
    /// shared 2-core host with 36 regions per chunk). GEMMs are split in row parts only where
    /// 36 would balance poorly over the threads. Without OpenMP they run one after the other,
    /// each threaded by the GEMM itself.
    private func gemms(rows: Int, _ body: (Int, Range<Int>) throws -> Void) throws {
        guard ComputeThreads.isOpenMP else {
            for xi in 0..<36 { try body(xi, 0..<rows) }
            return
        }
        let threads = ComputeThreads.threadCount
        let parts = max(1, min(rows / 8, (4 * threads + 35) / 36))
        var failure: Error?
        failureLock.lock()
        gemmFailure = nil
        failureLock.unlock()
        ComputeThreads.run(36 * parts) { items in
            for item in items {
                let xi = item / parts, p = item % parts
                do {
                    try body(xi, rows * p / parts..<rows * (p + 1) / parts)
                } catch {
                    failureLock.lock()
                    if gemmFailure == nil { gemmFailure = error }
                    failureLock.unlock()
                }
            }
        }
        failureLock.lock()
        failure = gemmFailure
        failureLock.unlock()
        if let failure { throw failure }
    }

    /// The forward machinery: `destination` = Winograd convolution of `source` with the
    /// transformed `filters` (36 × [inChannels × outChannels], or [outChannels × inChannels] when
    /// `filtersTransposed`) + `bias` (padded), ReLU optional.
    private func run(_ g: WinogradGeometry, chunk: Int, source: UnsafePointer<Float>, filters u: UnsafePointer<Float>,
                     filtersTransposed: Bool, bias: UnsafePointer<Float>?, relu: Bool,
                     destination: UnsafeMutablePointer<Float>) throws {
        let ldV = roundUp8(g.inChannels), ldM = roundUp8(g.outChannels)
        let strideV = winogradMatrixStride(chunk, ldV), strideM = winogradMatrixStride(chunk, ldM)
        let threads = ComputeThreads.threadCount
        let chunks = (g.tiles + chunk - 1) / chunk
        if ComputeThreads.isOpenMP && threads > 1 && chunks >= 2 * threads && !Self.cooperativeOnly {
            // Enough chunks for every thread: each runs whole chunks on its own (transforms and
            // 36 single-threaded GEMMs in its private scratch), one parallel region per call.
            // Why: the cooperative scheme below synchronises the team three times per chunk, and
            // on a loaded host every barrier whose threads are descheduled costs a time slice
            // (measured 2–3× slowdowns at N = 8 while another process ran); private chunks
            // also stay in their core's L2.
            let perThread = 36 * (strideV + strideM)
            let scratch = arena.threadScratch.reserve(threads * perThread)
            failureLock.lock()
            gemmFailure = nil
            failureLock.unlock()
            ComputeThreads.team(chunks, threads: threads) { range, thread in
                let v = scratch + thread * perThread, m = v + 36 * strideV
                for c in range {
                    let start = c * chunk, count = min(chunk, g.tiles - start)
                    do {
                        try runChunk(g, tiles: start..<start + count, v: v, strideV: strideV, m: m, strideM: strideM,
                                     filters: u, filtersTransposed: filtersTransposed, bias: bias, relu: relu,
                                     destination: destination, source: source)
                    } catch {
                        failureLock.lock()
                        if gemmFailure == nil { gemmFailure = error }
                        failureLock.unlock()
                    }
                }
            }
            failureLock.lock()
            let failure = gemmFailure
            failureLock.unlock()
            if let failure { throw failure }
            return
        }
        let v = arena.winogradData.reserve(36 * strideV)
        let m = arena.winogradResult.reserve(36 * strideM)
        for start in stride(from: 0, to: g.tiles, by: chunk) {
            let count = min(chunk, g.tiles - start)
            transformInputs(g, source: source, tiles: start..<start + count, into: v, rowStride: ldV, matrixStride: strideV)
            // Parts split the tiles (rows of V_ξ and M_ξ).
            try gemms(rows: count) { xi, r in
                try gemm.sgemm(transA: false, transB: filtersTransposed, m: r.count, n: g.outChannels, k: g.inChannels,
                               alpha: 1, a: v + xi * strideV + r.lowerBound * ldV, lda: ldV,
                               b: u + xi * g.inChannels * g.outChannels,
                               ldb: filtersTransposed ? g.inChannels : g.outChannels, beta: 0,
                               c: m + xi * strideM + r.lowerBound * ldM, ldc: ldM)
            }
            transformOutputs(g, source: m, tiles: start..<start + count, rowStride: ldM, matrixStride: strideM,
                             bias: bias, relu: relu, destination: destination)
        }
    }

    /// One chunk on the calling thread alone (inside a parallel region: the transforms run
    /// inline, and oneDNN runs each GEMM single-threaded).
    private func runChunk(_ g: WinogradGeometry, tiles: Range<Int>, v: UnsafeMutablePointer<Float>, strideV: Int,
                          m: UnsafeMutablePointer<Float>, strideM: Int, filters u: UnsafePointer<Float>,
                          filtersTransposed: Bool, bias: UnsafePointer<Float>?, relu: Bool,
                          destination: UnsafeMutablePointer<Float>, source: UnsafePointer<Float>) throws {
        let ldV = roundUp8(g.inChannels), ldM = roundUp8(g.outChannels)
        transformInputs(g, source: source, tiles: tiles, into: v, rowStride: ldV, matrixStride: strideV)
        for xi in 0..<36 {
            try gemm.sgemm(transA: false, transB: filtersTransposed, m: tiles.count, n: g.outChannels, k: g.inChannels,
                           alpha: 1, a: v + xi * strideV, lda: ldV, b: u + xi * g.inChannels * g.outChannels,
                           ldb: filtersTransposed ? g.inChannels : g.outChannels, beta: 0, c: m + xi * strideM, ldc: ldM)
        }
        transformOutputs(g, source: m, tiles: tiles, rowStride: ldM, matrixStride: strideM, bias: bias, relu: relu,
                         destination: destination)
    }
}

@inline(__always)
func roundUp8(_ n: Int) -> Int { (n + 7) & ~7 }

/// Floats from one of the 36 Winograd-domain matrices of a chunk to the next: `chunk` rows of
/// `rowStride`, plus one cache line. Why the line: a tile's 36 transformed vectors go to the
/// same row of the 36 matrices, and when the matrix size is a multiple of 4 KiB (it often is:
/// 96 tiles × 64 channels × 4 bytes) those 36 addresses share their page offset, so they fall
/// into one L1 set (8 ways) and alias in the store buffer — measured 2–3× slower transforms.
@inline(__always)
func winogradMatrixStride(_ chunk: Int, _ rowStride: Int) -> Int { chunk * rowStride + 16 }

/// The scratch of Winograd kernels that run one at a time (one backend's): each buffer grows
/// to the largest need and is shared, so a network's peak is its largest layer's scratch.
public final class WinogradArena {
    var winogradData = WinogradScratch()    // V: one chunk of the 36 input-transform matrices
    var winogradResult = WinogradScratch()  // M (or Z): one chunk of the 36 products
    var filters = WinogradScratch()         // U (forward) or rotated U (backward data)
    var filterGrad = WinogradScratch()      // dU accumulated over chunks
    var paddedBias = WinogradScratch()      // bias rounded up to a multiple of 8 channels
    var swappedWeights = WinogradScratch()  // (Cin, Cout, 3, 3) copy for the backward data pass
    var threadScratch = WinogradScratch()   // per-thread V and M when threads run whole chunks

    public init() {}

    deinit {
        for s in [winogradData, winogradResult, filters, filterGrad, paddedBias, swappedWeights, threadScratch] {
            s.deallocate()
        }
    }
}

/// A growable, 64-byte-aligned Float buffer that only ever grows (so steady-state calls do not
/// allocate). A class-free box: the kernel owns it and frees it in `deinit`.
struct WinogradScratch {
    private(set) var pointer: UnsafeMutablePointer<Float>?
    private(set) var capacity = 0

    /// At least `count` floats (zero-filled when newly allocated; contents otherwise kept).
    mutating func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if let pointer, capacity >= count { return pointer }
        deallocate()
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
        pointer = raw.assumingMemoryBound(to: Float.self)
        capacity = count
        return pointer!
    }

    func deallocate() { if let pointer { UnsafeMutableRawPointer(pointer).deallocate() } }
}
