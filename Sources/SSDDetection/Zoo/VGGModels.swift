import SSDLayers

/// The tutorial's family: a VGG16 base (pool3 in ceil mode, pool5 3×3/1/1, conv6 3×3 dilation 6,
/// conv7 1×1), conv4_3 L2-normalised with learned scales ×20, auxiliary convolutions, and a 3×3
/// localisation and class convolution on every source. SSD300 and SSD512 differ only in the
/// auxiliary layers and the priors; the compact model is SSD300 at 1/8 width with batch norm.
extension ModelDescription {
    /// The tutorial's SSD300: six sources, 8732 priors.
    public static func ssd300(classCount: Int, widthDivisor: Int = 1, batchNorm: Bool = false,
                              kind: ModelKind = .ssd300) -> ModelDescription {
        let w = VGGWidths(divisor: widthDivisor)
        // (name, in, out, kernel, stride, padding): conv8_1 … conv11_2.
        let auxiliary: [(String, Int, Int, Int, Int, Int)] = [
            ("conv8_1", w(1024), w(256), 1, 1, 0), ("conv8_2", w(256), w(512), 3, 2, 1),
            ("conv9_1", w(512), w(128), 1, 1, 0), ("conv9_2", w(128), w(256), 3, 2, 1),
            ("conv10_1", w(256), w(128), 1, 1, 0), ("conv10_2", w(128), w(256), 3, 1, 0),
            ("conv11_1", w(256), w(128), 1, 1, 0), ("conv11_2", w(128), w(256), 3, 1, 0),
        ]
        let maps = Priors.ssd300
        return vgg(kind: kind, classCount: classCount, inputSize: 300, widths: w, batchNorm: batchNorm,
                   auxiliary: auxiliary, maps: maps)
    }

    /// The compact demo model: SSD300 at 1/8 of VGG's widths (16 channels at least) with batch norm.
    public static func compact(classCount: Int) -> ModelDescription {
        ssd300(classCount: classCount, widthDivisor: 8, batchNorm: true, kind: .compact)
    }

    /// SSD512 in the tutorial's conventions with the paper's layout: seven sources (conv4_3 64²
    /// … conv12_2 1²), 24564 priors.
    public static func ssd512(classCount: Int, widthDivisor: Int = 1, batchNorm: Bool = false) -> ModelDescription {
        let w = VGGWidths(divisor: widthDivisor)
        let auxiliary: [(String, Int, Int, Int, Int, Int)] = [
            ("conv8_1", w(1024), w(256), 1, 1, 0), ("conv8_2", w(256), w(512), 3, 2, 1),
            ("conv9_1", w(512), w(128), 1, 1, 0), ("conv9_2", w(128), w(256), 3, 2, 1),
            ("conv10_1", w(256), w(128), 1, 1, 0), ("conv10_2", w(128), w(256), 3, 2, 1),
            ("conv11_1", w(256), w(128), 1, 1, 0), ("conv11_2", w(128), w(256), 3, 2, 1),
            ("conv12_1", w(256), w(128), 1, 1, 0), ("conv12_2", w(128), w(256), 4, 1, 1),
        ]
        return vgg(kind: .ssd512, classCount: classCount, inputSize: 512, widths: w, batchNorm: batchNorm,
                   auxiliary: auxiliary, maps: Priors.ssd512)
    }

    private static func vgg(kind: ModelKind, classCount: Int, inputSize: Int, widths w: VGGWidths, batchNorm: Bool,
                            auxiliary: [(String, Int, Int, Int, Int, Int)], maps: [FeatureMapSpec]) -> ModelDescription {
        func conv(_ prefix: String, _ name: String, _ i: Int, _ o: Int, _ k: Int, stride: Int = 1, padding: Int = 0,
                  dilation: Int = 1, initialization: Initialization) -> LayerSpec {
            // base.conv4_3 is normalised by base.bn4_3 in the batch-norm variant.
            .convolution(ConvolutionSpec(
                name: "\(prefix).\(name)", normalization: batchNorm ? "\(prefix).bn\(name.dropFirst(4))" : nil,
                inputChannels: i, outputChannels: o, kernelSize: k, stride: stride, padding: padding, dilation: dilation,
                activation: .relu, initialization: initialization))
        }
        func base(_ name: String, _ i: Int, _ o: Int, _ k: Int = 3, padding: Int = 1, dilation: Int = 1) -> LayerSpec {
            conv("base", name, i, o, k, padding: padding, dilation: dilation, initialization: .pytorchDefault)
        }
        func pool(_ k: Int = 2, _ s: Int = 2, padding: Int = 0, ceil: Bool = false) -> LayerSpec {
            .maxPool(kernelSize: k, stride: s, padding: padding, ceilMode: ceil)
        }
        var trunk: [LayerSpec] = [
            base("conv1_1", 3, w(64)), base("conv1_2", w(64), w(64)), pool(),
            base("conv2_1", w(64), w(128)), base("conv2_2", w(128), w(128)), pool(),
            base("conv3_1", w(128), w(256)), base("conv3_2", w(256), w(256)), base("conv3_3", w(256), w(256)), pool(ceil: true),
            base("conv4_1", w(256), w(512)), base("conv4_2", w(512), w(512)), base("conv4_3", w(512), w(512)), pool(),
            base("conv5_1", w(512), w(512)), base("conv5_2", w(512), w(512)), base("conv5_3", w(512), w(512)),
            pool(3, 1, padding: 1),
            base("conv6", w(512), w(1024), padding: 6, dilation: 6), base("conv7", w(1024), w(1024), 1, padding: 0),
        ]
        let conv4_3 = 12, conv7 = trunk.count - 1
        var sourceLayers = [(conv4_3, w(512)), (conv7, w(1024))]
        for (index, (name, i, o, k, s, p)) in auxiliary.enumerated() {
            trunk.append(conv("aux_convs", name, i, o, k, stride: s, padding: p, initialization: .xavierUniform))
            if index % 2 == 1 { sourceLayers.append((trunk.count - 1, o)) }  // every *_2 output
        }
        var sources: [FeatureSource] = []
        for (map, (layer, channels)) in zip(maps, sourceLayers) {
            func head(_ name: String, _ k: Int) -> LayerSpec {
                .convolution(ConvolutionSpec(name: "pred_convs.\(name)_\(map.name)", inputChannels: channels,
                                             outputChannels: map.boxesPerLocation * k, kernelSize: 3, padding: 1,
                                             nchwOutput: true, initialization: .xavierUniform))
            }
            sources.append(FeatureSource(
                name: map.name, layer: layer,
                side: layer == conv4_3 ? .l2Norm(name: "rescale_factors", channels: channels, initialScale: 20) : nil,
                channels: channels, locationHead: head("loc", 4), classHead: head("cl", classCount),
                boxesPerLocation: map.boxesPerLocation))
        }
        return ModelDescription(
            kind: kind, classCount: classCount, inputSize: inputSize,
            inputMean: [0.485, 0.456, 0.406], inputStd: [0.229, 0.224, 0.225], trunk: trunk, sources: sources,
            priorsCxcy: Priors.centreSize(maps), loss: .tutorial, evaluationDetection: DetectionSettings(),
            demoDetection: .demo, optimizerGroups: OptimizerGroups(biasLearningRateMultiplier: 2))
    }
}

/// VGG's channel counts divided by a divisor, never below 16 channels (so every layer holds
/// whole channel blocks of oneDNN's layouts, 8 or 16).
struct VGGWidths {
    let divisor: Int
    func callAsFunction(_ c: Int) -> Int { divisor == 1 ? c : max(c / divisor, 16) }
}
