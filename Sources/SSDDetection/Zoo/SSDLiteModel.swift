import SSDLayers

/// torchvision's `ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)`: a
/// MobileNetV3-Large backbone with the reduced tail, split after the expansion of its C4 block,
/// four extra blocks, and SSDLite heads of depthwise-separable convolutions on six maps; batch
/// norm with ε 0.001 and momentum 0.03 throughout; torchvision's state_dict names.
extension ModelDescription {
    public static func ssdlite320(classCount: Int) -> ModelDescription {
        var trunk: [LayerSpec] = [convNormActivation("backbone.features.0.0", 3, 16, 3, stride: 2, .hardswish)]
        // MobileNetV3-Large's inverted residual blocks 1…12 (torchvision's `bneck_conf`).
        for (index, block) in MobileNetV3Block.large.enumerated() where index < 12 {
            trunk.append(block.layer("backbone.features.0.\(index + 1)"))
        }
        // Block 13 (the C4 block) is split: its expansion ends the first feature extractor…
        let c4 = MobileNetV3Block.large[12]
        trunk.append(convNormActivation("backbone.features.0.13", c4.input, c4.expanded, 1, c4.activation))
        var sources = [(trunk.count - 1, c4.expanded)]
        // …and the rest of it (its names keep the block's indices 1, 2, 3) starts the second.
        trunk.append(.sequence(c4.layers("backbone.features.1.0", expand: false)))
        for (k, block) in MobileNetV3Block.large.dropFirst(13).enumerated() {
            trunk.append(block.layer("backbone.features.1.\(k + 1)"))
        }
        let last = MobileNetV3Block.large.last!.output
        trunk.append(convNormActivation("backbone.features.1.3", last, 6 * last, 1, .hardswish))
        sources.append((trunk.count - 1, 6 * last))
        // Extra blocks: 1×1 to half, depthwise 3×3 stride 2, 1×1 up; ReLU6; N(0, 0.03²) initialisation.
        var channels = 6 * last
        for (k, out) in [512, 256, 256, 128].enumerated() {
            let mid = out / 2, prefix = "backbone.extra.\(k)"
            trunk.append(.sequence([
                convNormActivation("\(prefix).0", channels, mid, 1, .relu6, initialization: .normal(std: 0.03)),
                convNormActivation("\(prefix).1", mid, mid, 3, stride: 2, groups: mid, .relu6, initialization: .normal(std: 0.03)),
                convNormActivation("\(prefix).2", mid, out, 1, .relu6, initialization: .normal(std: 0.03)),
            ]))
            sources.append((trunk.count - 1, out))
            channels = out
        }
        let anchors = DefaultBoxes.ssdlite320
        var heads: [FeatureSource] = []
        for (index, ((layer, channels), boxes)) in zip(sources, anchors.boxesPerLocation).enumerated() {
            // Depthwise 3×3 + BN + ReLU6, then a 1×1 convolution with bias to the predictions.
            func head(_ name: String, _ k: Int) -> LayerSpec {
                let prefix = "head.\(name).module_list.\(index)"
                return .sequence([
                    convNormActivation("\(prefix).0", channels, channels, 3, groups: channels, .relu6,
                                       initialization: .normal(std: 0.03)),
                    .convolution(ConvolutionSpec(name: "\(prefix).1", inputChannels: channels, outputChannels: boxes * k,
                                                 kernelSize: 1, nchwOutput: true, initialization: .normal(std: 0.03))),
                ])
            }
            heads.append(FeatureSource(name: "feature_\(index)", layer: layer, side: nil, channels: channels,
                                       locationHead: head("regression_head", 4), classHead: head("classification_head", classCount),
                                       boxesPerLocation: boxes))
        }
        var demo = DetectionSettings.torchvisionSSDLite
        demo.minScore = 0.2
        return ModelDescription(
            kind: .ssdlite320, classCount: classCount, inputSize: 320, inputMean: [0.5, 0.5, 0.5], inputStd: [0.5, 0.5, 0.5],
            trunk: trunk, sources: heads, priorsCxcy: anchors.centreSize(), loss: .torchvision,
            evaluationDetection: .torchvisionSSDLite, demoDetection: demo,
            optimizerGroups: OptimizerGroups(biasLearningRateMultiplier: 1))
    }
}

/// torchvision's `Conv2dNormActivation`: a convolution without bias (`PREFIX.0`), batch norm
/// (`PREFIX.1`, ε 0.001, momentum 0.03 as SSDLite sets them), then the activation.
private func convNormActivation(_ prefix: String, _ input: Int, _ output: Int, _ kernel: Int, stride: Int = 1, groups: Int = 1,
                                _ activation: Activation, initialization: Initialization = .kaimingNormalFanOut) -> LayerSpec {
    .convolution(ConvolutionSpec(name: "\(prefix).0", normalization: "\(prefix).1", inputChannels: input, outputChannels: output,
                                 kernelSize: kernel, stride: stride, padding: (kernel - 1) / 2, groups: groups, bias: false,
                                 activation: activation, epsilon: 0.001, momentum: 0.03, initialization: initialization))
}

/// One inverted residual block of MobileNetV3 (torchvision's `InvertedResidualConfig`).
private struct MobileNetV3Block {
    let input: Int, kernel: Int, expanded: Int, output: Int, squeeze: Bool, activation: Activation, stride: Int

    /// MobileNetV3-Large with the reduced tail (torchvision's `reduced_tail=True`: the last three
    /// blocks at half width), blocks 1…15.
    static let large: [MobileNetV3Block] = [
        .init(input: 16, kernel: 3, expanded: 16, output: 16, squeeze: false, activation: .relu, stride: 1),
        .init(input: 16, kernel: 3, expanded: 64, output: 24, squeeze: false, activation: .relu, stride: 2),
        .init(input: 24, kernel: 3, expanded: 72, output: 24, squeeze: false, activation: .relu, stride: 1),
        .init(input: 24, kernel: 5, expanded: 72, output: 40, squeeze: true, activation: .relu, stride: 2),
        .init(input: 40, kernel: 5, expanded: 120, output: 40, squeeze: true, activation: .relu, stride: 1),
        .init(input: 40, kernel: 5, expanded: 120, output: 40, squeeze: true, activation: .relu, stride: 1),
        .init(input: 40, kernel: 3, expanded: 240, output: 80, squeeze: false, activation: .hardswish, stride: 2),
        .init(input: 80, kernel: 3, expanded: 200, output: 80, squeeze: false, activation: .hardswish, stride: 1),
        .init(input: 80, kernel: 3, expanded: 184, output: 80, squeeze: false, activation: .hardswish, stride: 1),
        .init(input: 80, kernel: 3, expanded: 184, output: 80, squeeze: false, activation: .hardswish, stride: 1),
        .init(input: 80, kernel: 3, expanded: 480, output: 112, squeeze: true, activation: .hardswish, stride: 1),
        .init(input: 112, kernel: 3, expanded: 672, output: 112, squeeze: true, activation: .hardswish, stride: 1),
        .init(input: 112, kernel: 5, expanded: 672, output: 80, squeeze: true, activation: .hardswish, stride: 2),
        .init(input: 80, kernel: 5, expanded: 480, output: 80, squeeze: true, activation: .hardswish, stride: 1),
        .init(input: 80, kernel: 5, expanded: 480, output: 80, squeeze: true, activation: .hardswish, stride: 1),
    ]

    /// The block as one layer: with the skip connection where stride is 1 and the width is kept.
    func layer(_ prefix: String) -> LayerSpec {
        let body = layers("\(prefix).block", expand: true)
        return stride == 1 && input == output ? .residual(body) : .sequence(body)
    }

    /// Expansion (1×1, skipped when it would not widen, or when `expand` is false), depthwise
    /// k×k, squeeze-and-excitation, projection (1×1, no activation) — numbered as torchvision
    /// numbers them, the numbers kept when the expansion is cut off.
    func layers(_ prefix: String, expand: Bool) -> [LayerSpec] {
        var result: [LayerSpec] = []
        var index = 0
        if expanded != input {
            if expand { result.append(convNormActivation("\(prefix).\(index)", input, expanded, 1, activation)) }
            index += 1
        }
        result.append(convNormActivation("\(prefix).\(index)", expanded, expanded, kernel, stride: stride, groups: expanded, activation))
        index += 1
        if squeeze {
            // torchvision's `_make_divisible(expanded // 4, 8)`.
            let quarter = expanded / 4, rounded = max(8, (quarter + 4) / 8 * 8)
            let squeezed = Double(rounded) < 0.9 * Double(quarter) ? rounded + 8 : rounded
            result.append(.squeezeExcitation(name: "\(prefix).\(index)", channels: expanded, squeezeChannels: squeezed))
            index += 1
        }
        result.append(convNormActivation("\(prefix).\(index)", expanded, output, 1, .none))
        return result
    }
}
