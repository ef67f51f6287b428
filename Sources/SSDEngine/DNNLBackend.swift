import CDNNL
import Foundation

/// The oneDNN backend. Every primitive is created with `format_tag_any` so oneDNN picks its
/// fastest (blocked) layouts; plain NCHW/OIHW caller data is reordered in and out where the
/// layouts differ. (Building backward-data on the forward's weight layout instead makes
/// oneDNN fall back to its reference implementation, about 2000× slower.)
public final class DNNLBackend: Backend {
    public let name = "onednn"
    /// Staging memory shared by all of this backend's kernels.
    private let arena = DNNLArena()
    /// Scratch shared by all of this backend's Winograd kernels (ours).
    private let winogradArena = WinogradArena()
    private var reluCache: [Int: (fwd: DNNLPrimitive, bwd: DNNLPrimitive, data: DNNLMemory, diff: DNNLMemory)] = [:]

    public init() {}

    /// What oneDNN chose for every primitive this process created so far, in creation order.
    public static var createdKernels: [KernelImplementation] { DNNLRegistry.all }

    /// Forgets the primitives recorded so far (primitives stay alive; only the log is cleared).
    public static func resetKernelLog() { DNNLRegistry.reset() }

    private var reorderCache: [ReorderKey: (DNNLPrimitive, DNNLMemory, DNNLMemory)] = [:]
    private struct ReorderKey: Hashable { let shape: [Int]; let from: ActivationLayout; let to: ActivationLayout }

    /// The activation layout oneDNN's fastest convolution wants on this host, asked once.
    public private(set) lazy var hostLayout: ActivationLayout = DNNLBackend.probeActivationLayout()

    /// The host's blocked layout where the channels fill its blocks; else nChw8c where they fill
    /// 8-channel blocks (MobileNet's 24, 40, 72, 120, 184, 200 on an AVX-512 host: oneDNN's
    /// kernels then read and write them as they are, where NCHW cost two reorders a layer); else NCHW.
    public func preferredLayout(channels: Int) -> ActivationLayout {
        if hostLayout.admits([1, channels, 1, 1]) { return hostLayout }
        if hostLayout.channelBlock > 8 && ActivationLayout.blocked(8).admits([1, channels, 1, 1]) { return .blocked(8) }
        return .nchw
    }

    /// Asks oneDNN which layout it picks (`format_tag_any`) for the destination of a typical
    /// convolution and maps it to a layout we can carry between layers: nChw{b}c for the block
    /// it chose, NCHW if it chose something else.
    static func probeActivationLayout() -> ActivationLayout {
        guard let pd = probeConvolution(dnnl_convolution_direct) else { return .nchw }
        defer { dnnl_primitive_desc_destroy(pd) }
        let chosen = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0)!.pointee
        for layout in ActivationLayout.dnnlBlocked {
            if let md = try? memoryDesc(probeShape.outputShape, layout), sameLayout(md, chosen) { return layout }
        }
        return .nchw
    }

    /// The typical 3×3 convolution the probes ask about (64 → 64 channels, 38×38).
    private static let probeShape = ConvolutionShape(batch: 1, inChannels: 64, outChannels: 64, inHeight: 38, inWidth: 38,
                                                     kernelSize: (3, 3), padding: (1, 1))

    /// The primitive descriptor oneDNN gives a training forward of `probeShape` with `algorithm`
    /// and free layouts, or nil where it has none (the caller destroys it). Only a descriptor:
    /// no primitive is created, so nothing enters the kernel log.
    private static func probeConvolution(_ algorithm: dnnl_alg_kind_t) -> dnnl_primitive_desc_t? {
        guard var d = try? DNNLConvolutionDescs(probeShape, input: .nchw, output: .nchw) else { return nil }
        var op = dnnl_convolution_desc_t()
        guard dnnl_dilated_convolution_forward_desc_init(&op, dnnl_forward_training, algorithm, &d.anySrc, &d.anyWeights,
                                                         &d.bias, &d.anyDst, d.strides, d.dilates, d.padL, d.padR) == dnnl_success
        else { return nil }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, &op, nil, DNNLContext.shared.engine, nil) == dnnl_success else { return nil }
        return pd
    }

    public func convolution(_ shape: ConvolutionShape, algorithm: ConvolutionAlgorithm, input: ActivationLayout,
                            output: ActivationLayout, activation: ActivationFunction?, inference: Bool) throws -> ConvolutionKernel {
        try checkLayout(input, channels: shape.inChannels)
        // Training kernels fuse a ReLU only: the backward of the others needs the pre-activation.
        let fused = activation == .relu || inference ? activation : nil
        try checkLayout(output, channels: shape.outChannels)
        // oneDNN 2.6 has Winograd only for AVX-512; elsewhere ours (its GEMMs through oneDNN's sgemm),
        // where there are enough tiles for its GEMMs to beat direct convolution (measured: at
        // 25 tiles, 512→512 19×19 batch 1, it does not; at 100, 38×38 batch 1, it is 1.6–1.8× faster).
        let tiles = shape.batch * ((shape.outHeight + 3) / 4) * ((shape.outWidth + 3) / 4)
        if algorithm != .direct && shape.winogradEligible && !DNNLBackend.oneDNNHasWinograd
            && tiles >= DNNLBackend.winogradMinimumTiles
            && min(shape.inChannels, shape.outChannels) >= DNNLBackend.winogradMinimumChannels {
            return try WinogradConvolution(shape, input: input, output: output, fusedReLU: fused == .relu, gemm: self,
                                           arena: winogradArena)
        }
        return try DNNLConvolution(shape, algorithm: algorithm, input: input, output: output, activation: fused,
                                   inference: inference, arena: arena)
    }

    /// The fewest input and output channels for which our Winograd is used: with fewer, its 36
    /// GEMMs are too thin to pay for the transforms (the RGB input layer, the compact model's
    /// 16-channel layers at 300×300).
    /// Measured on the compact model's training step (AVX2): 21.7 img/s with every eligible layer
    /// on ours, 24.9 with 16-channel layers on oneDNN's direct kernels.
    public static let winogradMinimumChannels = 32

    /// The fewest 4×4 output tiles (batch included) for which our Winograd is used.
    public static let winogradMinimumTiles = 64

    /// Whether oneDNN has a Winograd convolution on this host (asked once, for a typical 3×3
    /// convolution on the host's activation layout). `SSD_WINOGRAD=ours` uses ours regardless.
    public static let oneDNNHasWinograd: Bool = {
        if ProcessInfo.processInfo.environment["SSD_WINOGRAD"] == "ours" { return false }
        guard let pd = probeConvolution(dnnl_convolution_winograd) else { return false }
        dnnl_primitive_desc_destroy(pd)
        return true
    }()

    public func maxPooling(_ shape: PoolingShape, layout: ActivationLayout, inference: Bool) throws -> PoolingKernel {
        try checkLayout(layout, channels: shape.channels)
        return try DNNLMaxPooling(shape, layout: layout, inference: inference)
    }

    public func reorder(_ source: Tensor, into destination: Tensor) throws {
        try destination.requireShape(source.shape, "reorder destination")
        if source.layout == destination.layout { destination.copy(from: source); return }
        let key = ReorderKey(shape: source.shape, from: source.layout, to: destination.layout)
        let entry: (DNNLPrimitive, DNNLMemory, DNNLMemory)
        if let cached = reorderCache[key] { entry = cached } else {
            let from = try memoryDesc(source.shape, source.layout)
            let to = try memoryDesc(source.shape, destination.layout)
            entry = (try DNNLPrimitive(reorderFrom: from, to: to, what: "reorder activations \(key.shape) \(key.from)→\(key.to)"), try DNNLMemory(from, own: false), try DNNLMemory(to, own: false))
            reorderCache[key] = entry
        }
        try entry.1.bind(source.data)
        try entry.2.bind(destination.data)
        try entry.0.execute([(DNNL_ARG_FROM, entry.1), (DNNL_ARG_TO, entry.2)])
    }

    private func relu(count: Int) throws -> (fwd: DNNLPrimitive, bwd: DNNLPrimitive, data: DNNLMemory, diff: DNNLMemory) {
        if let cached = reluCache[count] { return cached }
        var md = try memoryDesc([count], dnnl_a)
        var fd = dnnl_eltwise_desc_t()
        try dnnlCheck(dnnl_eltwise_forward_desc_init(&fd, dnnl_forward_training, dnnl_eltwise_relu_use_dst_for_bwd,
                                                     &md, 0, 0), "eltwise_forward_desc_init")
        let fwd = try DNNLPrimitive(opDesc: &fd, what: "relu forward")
        var bd = dnnl_eltwise_desc_t()
        try dnnlCheck(dnnl_eltwise_backward_desc_init(&bd, dnnl_eltwise_relu_use_dst_for_bwd, &md, &md, 0, 0),
                      "eltwise_backward_desc_init")
        let bwd = try DNNLPrimitive(opDesc: &bd, hint: fwd.pd, what: "relu backward")
        let entry = (fwd: fwd, bwd: bwd, data: try DNNLMemory(md, own: false), diff: try DNNLMemory(md, own: false))
        reluCache[count] = entry
        return entry
    }

    public func reluForward(_ x: UnsafeMutablePointer<Float>, count: Int) throws {
        guard count > 0 else { return }
        let r = try relu(count: count)
        try r.data.bind(x)
        try r.fwd.execute([(DNNL_ARG_SRC, r.data), (DNNL_ARG_DST, r.data)])
    }

    public func reluBackward(output: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int) throws {
        guard count > 0 else { return }
        let r = try relu(count: count)
        try r.data.bind(output)
        try r.diff.bind(grad)
        try r.bwd.execute([(DNNL_ARG_DST, r.data), (DNNL_ARG_DIFF_DST, r.diff), (DNNL_ARG_DIFF_SRC, r.diff)])
    }

    public func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) throws {
        try dnnlCheck(dnnl_sgemm(CChar(UInt8(ascii: transA ? "T" : "N")), CChar(UInt8(ascii: transB ? "T" : "N")),
                                 dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), alpha, a, dnnl_dim_t(lda),
                                 b, dnnl_dim_t(ldb), beta, c, dnnl_dim_t(ldc)), "sgemm")
    }
}

/// The memory descriptors and geometry arrays of one convolution shape, shared by its forward
/// and backward primitives: plain (NCHW/OIHW) user layouts and `format_tag_any` ones.
struct DNNLConvolutionDescs {
    let userSrc, userWeights, userDst: dnnl_memory_desc_t
    var bias, anySrc, anyWeights, anyDst: dnnl_memory_desc_t
    let strides, dilates, padL, padR: [dnnl_dim_t]

    init(_ s: ConvolutionShape, input: ActivationLayout, output: ActivationLayout) throws {
        strides = [s.strideHeight, s.strideWidth].map { dnnl_dim_t($0) }
        dilates = [s.dilationHeight - 1, s.dilationWidth - 1].map { dnnl_dim_t($0) }  // oneDNN: 0 = dense
        padL = [s.paddingHeight, s.paddingWidth].map { dnnl_dim_t($0) }
        // Right padding chosen so oneDNN's output extent equals PyTorch's floor formula.
        padR = [
            (s.outHeight - 1) * s.strideHeight + s.dilationHeight * (s.kernelHeight - 1) + 1 - s.inHeight - s.paddingHeight,
            (s.outWidth - 1) * s.strideWidth + s.dilationWidth * (s.kernelWidth - 1) + 1 - s.inWidth - s.paddingWidth,
        ].map { dnnl_dim_t($0) }
        userSrc = try memoryDesc(s.inputShape, input)
        // Grouped weights are 5-D for oneDNN: goihw (G, Cout/G, Cin/G, kh, kw), the same memory as
        // PyTorch's (Cout, Cin/G, kh, kw).
        let weightDims = s.groups == 1 ? s.weightShape
            : [s.groups, s.outChannels / s.groups, s.inChannels / s.groups, s.kernelHeight, s.kernelWidth]
        userWeights = try memoryDesc(weightDims, s.groups == 1 ? dnnl_oihw : dnnl_goihw)
        userDst = try memoryDesc(s.outputShape, output)
        bias = try memoryDesc([s.outChannels], dnnl_x)
        // A few-channel plain input (the RGB image) stays plain: left to choose, oneDNN pads it to
        // a whole channel block in a blocked copy — several times the memory and a reorder per call.
        // (Not for grouped convolutions: oneDNN's depthwise kernels want blocked data.)
        let fewChannels = s.groups == 1 && ActivationLayout.dnnlBlocked.allSatisfy { s.inChannels % $0.channelBlock != 0 }
        anySrc = input == .nchw && fewChannels ? userSrc : try memoryDesc(s.inputShape, dnnl_format_tag_any)
        anyWeights = try memoryDesc(weightDims, dnnl_format_tag_any)
        anyDst = try memoryDesc(s.outputShape, dnnl_format_tag_any)
    }
}

/// One convolution shape: the forward primitive with the layouts oneDNN chose and the
/// reorders between those and NCHW/OIHW; the backward primitives follow at the first backward.
final class DNNLConvolution: ConvolutionKernel {
    let shape: ConvolutionShape
    let implementation: String
    let inputLayout: ActivationLayout
    let outputLayout: ActivationLayout
    let fusedActivation: ActivationFunction?
    /// Planned for forward calls only (`forward_inference`, weights reordered once per version).
    let inference: Bool

    private let fwd: DNNLPrimitive
    private let fwdSrc, fwdWeights, fwdDst: DNNLStaging
    private let fwdBias: DNNLMemory

    /// Backward primitives and buffers, built at the first backward call so that inference
    /// never pays for them.
    private var backward: DNNLConvolutionBackward?
    private let descs: DNNLConvolutionDescs
    private let arena: DNNLArena
    private let algorithmKind: dnnl_alg_kind_t
    private let biasScratch: Tensor  // (Cout): zero bias for forward calls without one

    init(_ shape: ConvolutionShape, algorithm: ConvolutionAlgorithm, input: ActivationLayout, output: ActivationLayout,
         activation wanted: ActivationFunction?, inference: Bool, arena: DNNLArena) throws {
        try shape.validate()
        self.arena = arena
        self.inference = inference
        self.shape = shape
        inputLayout = input
        outputLayout = output
        let s = shape
        var d = try DNNLConvolutionDescs(s, input: input, output: output)

        let prop = inference ? dnnl_forward_inference : dnnl_forward_training
        let stage = inference ? "inference" : "forward"
        func makeForward(_ alg: dnnl_alg_kind_t, activation: ActivationFunction?) throws -> DNNLPrimitive {
            var op = dnnl_convolution_desc_t()
            // Inference first asks for a kernel on the activation layouts the network carries
            // (left free, oneDNN may pick another layout for inference alone and pay two
            // reorders a layer); a reference implementation there falls back to its choice.
            let pinned = inference && input != .nchw && output != .nchw
            for free in pinned ? [false, true] : [true] {
                var src = free ? d.anySrc : d.userSrc, dst = free ? d.anyDst : d.userDst
                try dnnlCheck(dnnl_dilated_convolution_forward_desc_init(&op, prop, alg, &src, &d.anyWeights,
                                                                         &d.bias, &dst, d.strides, d.dilates, d.padL, d.padR),
                              "convolution_forward_desc_init \(s)")
                // Bias and activation in the convolution's epilogue: one pass over the output instead of two.
                let attr = try activation.map { try DNNLAttributes(activation: $0) }
                let made = try DNNLPrimitive(opDesc: &op, attr: attr?.handle,
                                             what: "convolution \(stage) \(s)\(activation.map { " + \($0)" } ?? "")")
                if !free && made.implementation.hasPrefix("ref") {
                    DNNLRegistry.forgetLast()  // not used: the free choice follows
                    continue
                }
                return made
            }
            throw EngineError.backend("no convolution for \(s)")
        }
        let wantWinograd = (algorithm == .winograd || algorithm == .auto) && s.winogradEligible
        var chosen = dnnl_convolution_direct
        var candidates: [(dnnl_alg_kind_t, ActivationFunction?)] = []
        let fusable = wanted.flatMap { DNNLAttributes.eltwise($0) == nil ? nil : $0 }
        for alg in wantWinograd ? [dnnl_convolution_winograd, dnnl_convolution_direct] : [dnnl_convolution_direct] {
            if let fusable { candidates.append((alg, fusable)) }
            candidates.append((alg, nil))
        }
        var made: (DNNLPrimitive, ActivationFunction?)?
        var lastError: Error?
        for (alg, activation) in candidates {
            do {
                made = (try makeForward(alg, activation: activation), activation)
                chosen = alg
                break
            } catch { lastError = error }
        }
        guard let (primitive, fused) = made else { throw lastError ?? EngineError.backend("no convolution for \(s)") }
        fwd = primitive
        fusedActivation = fused
        implementation = fwd.implementation
        fwdSrc = try DNNLStaging(user: d.userSrc, internal: fwd.queryDesc(dnnl_query_src_md), needsIn: true, needsOut: false,
                                 arena: arena, role: .forwardSource)
        fwdWeights = try DNNLStaging(user: d.userWeights, internal: fwd.queryDesc(dnnl_query_weights_md),
                                     needsIn: true, needsOut: false, arena: arena, role: .forwardWeights,
                                     persistent: inference)
        fwdDst = try DNNLStaging(user: d.userDst, internal: fwd.queryDesc(dnnl_query_dst_md), needsIn: false, needsOut: true,
                                 arena: arena, role: .forwardDestination)
        fwdBias = try DNNLMemory(d.bias, own: false)
        descs = d
        algorithmKind = chosen
        biasScratch = Tensor(shape: [s.outChannels])
    }

    private func backwardParts() throws -> DNNLConvolutionBackward {
        // The backward primitives need the forward's hint only; the fused ReLU's mask is the
        // caller's to apply (it has the output).
        if let b = backward { return b }
        guard !inference else { throw EngineError.invalidArgument("\(shape): backward through a kernel planned for inference") }
        let b = try DNNLConvolutionBackward(shape, descs: descs, algorithm: algorithmKind, forward: fwd, input: inputLayout,
                                            output: outputLayout, arena: arena)
        backward = b
        return b
    }

    func forward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 output: UnsafeMutablePointer<Float>) throws {
        try fwdWeights.load(weight)
        try run(input: input, bias: bias, output: output)
    }

    func forward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, weightsVersion: UInt64,
                 bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) throws {
        try fwdWeights.load(weight, version: weightsVersion)
        try run(input: input, bias: bias, output: output)
    }

    private func run(input: UnsafePointer<Float>, bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) throws {
        try fwdSrc.load(input)
        if let bias {
            try fwdBias.bind(bias)
        } else {
            biasScratch.zero()
            try fwdBias.bind(biasScratch.data)
        }
        try fwdDst.bindOutput(output)
        try fwd.execute([(DNNL_ARG_SRC, fwdSrc.internalMemory), (DNNL_ARG_WEIGHTS, fwdWeights.internalMemory),
                         (DNNL_ARG_BIAS, fwdBias), (DNNL_ARG_DST, fwdDst.internalMemory)])
        try fwdDst.store()
    }

    func backwardData(outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                      inputGrad: UnsafeMutablePointer<Float>) throws {
        try backwardParts().data(outputGrad: outputGrad, weight: weight, inputGrad: inputGrad)
    }

    func backwardWeights(input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                         weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?) throws {
        try backwardParts().weights(input: input, outputGrad: outputGrad, weightGrad: weightGrad, biasGrad: biasGrad)
    }
}

/// The backward-data and backward-weights primitives of one convolution, each with its own
/// layouts (created with `format_tag_any` and the forward as the hint).
final class DNNLConvolutionBackward {
    let shape: ConvolutionShape
    private let bwdData: DNNLPrimitive
    private let bdDiffDst, bdWeights, bdDiffSrc: DNNLStaging
    /// nil where our depthwise kernel computes the weight gradient instead (`DepthwiseWeights`).
    private let bwdWeights: DNNLPrimitive?
    private let bwSrc, bwDiffDst, bwDiffWeights: DNNLStaging?
    private let inputLayout, outputLayout: ActivationLayout
    private let bwDiffBias: DNNLMemory
    private let biasScratch: Tensor    // (Cout): this call's bias gradient, added to the caller's

    init(_ s: ConvolutionShape, descs: DNNLConvolutionDescs, algorithm chosen: dnnl_alg_kind_t, forward fwd: DNNLPrimitive,
         input: ActivationLayout, output: ActivationLayout, arena: DNNLArena) throws {
        shape = s
        inputLayout = input
        outputLayout = output
        var d = descs
        // Backward data: its own layouts, with the forward as the hint.
        var bdDesc = dnnl_convolution_desc_t()
        try dnnlCheck(dnnl_dilated_convolution_backward_data_desc_init(&bdDesc, chosen, &d.anySrc, &d.anyWeights, &d.anyDst,
                                                                       d.strides, d.dilates, d.padL, d.padR),
                      "convolution_backward_data_desc_init \(s)")
        bwdData = try DNNLPrimitive(opDesc: &bdDesc, hint: fwd.pd, what: "convolution backward data \(s)")
        bdDiffDst = try DNNLStaging(user: d.userDst, internal: bwdData.queryDesc(dnnl_query_diff_dst_md),
                                    needsIn: true, needsOut: false, arena: arena, role: .backwardDataDiffDestination)
        bdWeights = try DNNLStaging(user: d.userWeights, internal: bwdData.queryDesc(dnnl_query_weights_md),
                                    needsIn: true, needsOut: false, arena: arena, role: .backwardDataWeights)
        bdDiffSrc = try DNNLStaging(user: d.userSrc, internal: bwdData.queryDesc(dnnl_query_diff_src_md),
                                    needsIn: false, needsOut: true, arena: arena, role: .backwardDataDiffSource)

        // Backward weights.
        var bwDesc = dnnl_convolution_desc_t()
        try dnnlCheck(dnnl_dilated_convolution_backward_weights_desc_init(&bwDesc, chosen, &d.anySrc, &d.anyWeights, &d.bias,
                                                                          &d.anyDst, d.strides, d.dilates, d.padL, d.padR),
                      "convolution_backward_weights_desc_init \(s)")
        let weights = try DNNLPrimitive(opDesc: &bwDesc, hint: fwd.pd, what: "convolution backward weights \(s)")
        if DepthwiseWeights.applies(to: s) && !weights.implementation.hasPrefix("jit_dw") {
            // oneDNN has no depthwise kernel for this one (im2col + GEMM instead): ours replaces it.
            DNNLRegistry.forgetLast()
            DNNLRegistry.record("convolution backward weights \(s)", DepthwiseWeights.implementation)
            bwdWeights = nil
            bwSrc = nil
            bwDiffDst = nil
            bwDiffWeights = nil
        } else {
            bwdWeights = weights
            bwSrc = try DNNLStaging(user: d.userSrc, internal: weights.queryDesc(dnnl_query_src_md),
                                    needsIn: true, needsOut: false, arena: arena, role: .backwardWeightsSource)
            bwDiffDst = try DNNLStaging(user: d.userDst, internal: weights.queryDesc(dnnl_query_diff_dst_md),
                                        needsIn: true, needsOut: false, arena: arena, role: .backwardWeightsDiffDestination)
            // oneDNN overwrites its outputs; the contract is to accumulate, so the weight gradient
            // lands in the arena and a summing reorder adds it to the caller's.
            bwDiffWeights = try DNNLStaging(user: d.userWeights, internal: weights.queryDesc(dnnl_query_diff_weights_md),
                                            needsIn: false, needsOut: true, arena: arena, role: .backwardWeightsDiffWeights,
                                            accumulate: true)
        }
        bwDiffBias = try DNNLMemory(d.bias, own: false)
        biasScratch = Tensor(shape: [s.outChannels])
    }

    func data(outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>, inputGrad: UnsafeMutablePointer<Float>) throws {
        try bdDiffDst.load(outputGrad)
        try bdWeights.load(weight)
        try bdDiffSrc.bindOutput(inputGrad)
        try bwdData.execute([(DNNL_ARG_DIFF_DST, bdDiffDst.internalMemory), (DNNL_ARG_WEIGHTS, bdWeights.internalMemory),
                             (DNNL_ARG_DIFF_SRC, bdDiffSrc.internalMemory)])
        try bdDiffSrc.store()
    }

    func weights(input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                 weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?) throws {
        guard let bwdWeights, let bwSrc, let bwDiffDst, let bwDiffWeights else {
            DepthwiseWeights.accumulate(shape, input: input, inputLayout: inputLayout, outputGrad: outputGrad,
                                        outputLayout: outputLayout, weightGrad: weightGrad, biasGrad: biasGrad)
            return
        }
        try bwSrc.load(input)
        try bwDiffDst.load(outputGrad)
        try bwDiffWeights.bindOutput(weightGrad)
        try bwDiffBias.bind(biasScratch.data)
        try bwdWeights.execute([(DNNL_ARG_SRC, bwSrc.internalMemory), (DNNL_ARG_DIFF_DST, bwDiffDst.internalMemory),
                                (DNNL_ARG_DIFF_WEIGHTS, bwDiffWeights.internalMemory), (DNNL_ARG_DIFF_BIAS, bwDiffBias)])
        try bwDiffWeights.store()  // weightGrad += this call's gradient
        if let biasGrad {
            for i in 0..<shape.outChannels { biasGrad[i] += biasScratch.data[i] }
        }
    }
}

/// Max pooling over NCHW or blocked data, with the workspace (arg-max positions) the backward needs.
final class DNNLMaxPooling: PoolingKernel {
    let shape: PoolingShape
    let layout: ActivationLayout
    private let fwd: DNNLPrimitive
    /// Nil for a kernel planned for inference (no arg-max positions kept).
    private let bwd: DNNLPrimitive?
    private let src, dst, diffSrc, diffDst: DNNLMemory
    private let workspace: DNNLMemory?

    init(_ shape: PoolingShape, layout: ActivationLayout, inference: Bool) throws {
        try shape.validate()
        self.shape = shape
        self.layout = layout
        let s = shape
        var srcDesc = try memoryDesc(s.inputShape, layout)
        var dstDesc = try memoryDesc(s.outputShape, layout)
        let padL = [s.padding, s.padding].map { dnnl_dim_t($0) }
        // Ceil mode: pad on the right just enough for oneDNN to produce PyTorch's extent.
        let padR = [
            s.ceilMode ? (s.outHeight - 1) * s.stride + s.kernel - s.inHeight - s.padding : s.padding,
            s.ceilMode ? (s.outWidth - 1) * s.stride + s.kernel - s.inWidth - s.padding : s.padding,
        ].map { dnnl_dim_t($0) }
        let strides = [dnnl_dim_t(s.stride), dnnl_dim_t(s.stride)]
        let kernel = [dnnl_dim_t(s.kernel), dnnl_dim_t(s.kernel)]
        let dilation: [dnnl_dim_t] = [0, 0]
        var fd = dnnl_pooling_v2_desc_t()
        try dnnlCheck(dnnl_pooling_v2_forward_desc_init(&fd, inference ? dnnl_forward_inference : dnnl_forward_training,
                                                        dnnl_pooling_max, &srcDesc, &dstDesc, strides, kernel, dilation, padL, padR),
                      "pooling_forward_desc_init \(s)")
        fwd = try DNNLPrimitive(opDesc: &fd, what: "max pooling \(inference ? "inference" : "forward") \(s)")
        src = try DNNLMemory(srcDesc, own: false)
        dst = try DNNLMemory(dstDesc, own: false)
        diffSrc = try DNNLMemory(srcDesc, own: false)
        diffDst = try DNNLMemory(dstDesc, own: false)
        guard !inference else {
            bwd = nil
            workspace = nil
            return
        }
        var bd = dnnl_pooling_v2_desc_t()
        try dnnlCheck(dnnl_pooling_v2_backward_desc_init(&bd, dnnl_pooling_max, &srcDesc, &dstDesc,
                                                         strides, kernel, dilation, padL, padR),
                      "pooling_backward_desc_init \(s)")
        bwd = try DNNLPrimitive(opDesc: &bd, hint: fwd.pd, what: "max pooling backward \(s)")
        workspace = try DNNLMemory(fwd.queryDesc(dnnl_query_workspace_md), own: true)
    }

    func forward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) throws {
        try src.bind(input)
        try dst.bind(output)
        if let workspace {
            try fwd.execute([(DNNL_ARG_SRC, src), (DNNL_ARG_DST, dst), (DNNL_ARG_WORKSPACE, workspace)])
        } else {
            try fwd.execute([(DNNL_ARG_SRC, src), (DNNL_ARG_DST, dst)])
        }
    }

    func backward(outputGrad: UnsafePointer<Float>, inputGrad: UnsafeMutablePointer<Float>) throws {
        guard let bwd, let workspace else {
            throw EngineError.invalidArgument("\(shape): backward through a max pooling planned for inference")
        }
        try diffDst.bind(outputGrad)
        try diffSrc.bind(inputGrad)
        try bwd.execute([(DNNL_ARG_DIFF_DST, diffDst), (DNNL_ARG_WORKSPACE, workspace), (DNNL_ARG_DIFF_SRC, diffSrc)])
    }
}
