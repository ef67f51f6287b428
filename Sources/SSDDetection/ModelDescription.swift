import SSDEngine
import SSDLayers

/// The models `ssd` knows, by the name they carry in checkpoints and on the command line.
public enum ModelKind: String, Codable, CaseIterable, Sendable, CustomStringConvertible {
    /// The tutorial's SSD300: VGG16 base, six sources, 8732 priors.
    case ssd300
    /// The same conventions with the paper's 512 layout: seven sources, 24564 priors.
    case ssd512
    /// torchvision's `ssdlite320_mobilenet_v3_large`: 3234 anchors on six maps.
    case ssdlite320
    /// SSD300 at 1/8 of VGG's widths with batch normalisation: trains from scratch in minutes.
    case compact

    public var description: String { rawValue }
}

/// Where a layer's initial values come from when a model is built without weights.
public enum Initialization: Sendable, Equatable {
    /// PyTorch's `nn.Conv2d` default (kaiming-uniform, a = √5; the same bound for the bias).
    case pytorchDefault
    /// Xavier-uniform weights, zero bias (the tutorial's new layers).
    case xavierUniform
    /// Kaiming-normal with fan-out, zero bias (torchvision's MobileNetV3).
    case kaimingNormalFanOut
    /// N(0, std²) weights, zero bias (torchvision's SSDLite extras and heads).
    case normal(std: Float)
}

/// A convolution with what follows it: optional batch normalisation, then an activation.
public struct ConvolutionSpec: Sendable, Equatable {
    /// The convolution's state_dict prefix (`base.conv1_1`, `backbone.features.0.0.0`).
    public var name: String
    /// The batch normalisation's state_dict prefix, or nil for none.
    public var normalization: String?
    public var inputChannels: Int
    public var outputChannels: Int
    public var kernelSize: Int
    public var stride = 1
    public var padding = 0
    public var dilation = 1
    /// 1 for a dense convolution, `inputChannels` for a depthwise one.
    public var groups = 1
    /// Whether the convolution has a bias (convolutions feeding a batch norm don't in torchvision).
    public var bias = true
    public var activation: Activation = .none
    /// Batch normalisation's ε and momentum (PyTorch's defaults, 1e-5 and 0.1, unless a model says otherwise).
    public var epsilon: Float = 1e-5
    public var momentum: Float = 0.1
    /// Heads write NCHW (their outputs are scattered plane by plane); the trunk keeps the host's layout.
    public var nchwOutput = false
    public var initialization: Initialization = .pytorchDefault

    public init(name: String, normalization: String? = nil, inputChannels: Int, outputChannels: Int, kernelSize: Int,
                stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = true,
                activation: Activation = .none, epsilon: Float = 1e-5, momentum: Float = 0.1, nchwOutput: Bool = false,
                initialization: Initialization = .pytorchDefault) {
        self.name = name
        self.normalization = normalization
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.bias = bias
        self.activation = activation
        self.epsilon = epsilon
        self.momentum = momentum
        self.nchwOutput = nchwOutput
        self.initialization = initialization
    }
}

/// One layer of a model, as data: what a builder turns into `Layer`s and an exporter walks.
public indirect enum LayerSpec: Sendable, Equatable {
    case convolution(ConvolutionSpec)
    case maxPool(kernelSize: Int, stride: Int, padding: Int, ceilMode: Bool)
    /// SSD's conv4_3 L2 normalisation with learned per-channel scales (state_dict name `name`).
    case l2Norm(name: String, channels: Int, initialScale: Float)
    /// torchvision's squeeze-and-excitation: x · hardsigmoid(fc2(relu(fc1(mean over H, W)))).
    case squeezeExcitation(name: String, channels: Int, squeezeChannels: Int)
    /// Layers applied one after another.
    case sequence([LayerSpec])
    /// x + body(x).
    case residual([LayerSpec])

    /// Output channels for `inputChannels` coming in.
    public func outputChannels(_ inputChannels: Int) -> Int {
        switch self {
        case let .convolution(c): return c.outputChannels
        case .maxPool, .l2Norm, .squeezeExcitation, .residual: return inputChannels
        case let .sequence(body): return body.reduce(inputChannels) { $1.outputChannels($0) }
        }
    }
}

/// A feature map that feeds the prediction heads: the output of trunk layer `layer`, through
/// `side` when given (SSD300's L2 norm of conv4_3), with the priors placed on it.
public struct FeatureSource: Sendable, Equatable {
    /// The name of the map (`conv4_3`, `feature_0`).
    public var name: String
    /// Index into the description's `trunk` of the layer whose output this is.
    public var layer: Int
    public var side: LayerSpec?
    public var channels: Int
    /// The localisation head: (N, C, H, W) → (N, boxes · 4, H, W), NCHW.
    public var locationHead: LayerSpec
    /// The class head: (N, C, H, W) → (N, boxes · classes, H, W), NCHW.
    public var classHead: LayerSpec
    /// Priors per location on this map.
    public var boxesPerLocation: Int

    public init(name: String, layer: Int, side: LayerSpec? = nil, channels: Int, locationHead: LayerSpec, classHead: LayerSpec,
                boxesPerLocation: Int) {
        self.name = name
        self.layer = layer
        self.side = side
        self.channels = channels
        self.locationHead = locationHead
        self.classHead = classHead
        self.boxesPerLocation = boxesPerLocation
    }
}

/// How a model's parameters are grouped for the optimizer.
public struct OptimizerGroups: Sendable, Equatable {
    /// The bias group's learning rate, relative to the rest (the tutorial doubles it; torchvision doesn't).
    public var biasLearningRateMultiplier: Float
    public init(biasLearningRateMultiplier: Float) { self.biasLearningRateMultiplier = biasLearningRateMultiplier }
}

/// One model, fully described: the trunk (backbone then extra layers, in order), the feature
/// maps that feed the heads and their heads, the priors, the input it expects, the loss and the
/// post-processing. `SSDModel` builds forward, backward, buffers, state_dict names and optimizer
/// groups from it; an exporter walks the same description.
public struct ModelDescription: Sendable {
    public var kind: ModelKind
    public var classCount: Int
    /// Input side (square images).
    public var inputSize: Int
    /// Per-channel mean and standard deviation the RGB input in [0, 1] is normalised with.
    public var inputMean: [Float]
    public var inputStd: [Float]
    /// Layers applied in order to the image.
    public var trunk: [LayerSpec]
    /// The feature maps, in prediction order (their priors are stacked in this order).
    public var sources: [FeatureSource]
    /// Priors in centre-size form, (n_priors, 4) flattened, fractions of the image.
    public var priorsCxcy: [Float]
    /// The matching and loss convention.
    public var loss: LossConvention
    /// Post-processing for evaluation (mAP) and for showing detections.
    public var evaluationDetection: DetectionSettings
    public var demoDetection: DetectionSettings
    public var optimizerGroups: OptimizerGroups

    public var priorCount: Int { priorsCxcy.count / 4 }

    public init(kind: ModelKind, classCount: Int, inputSize: Int, inputMean: [Float], inputStd: [Float], trunk: [LayerSpec],
                sources: [FeatureSource], priorsCxcy: [Float], loss: LossConvention, evaluationDetection: DetectionSettings,
                demoDetection: DetectionSettings, optimizerGroups: OptimizerGroups) {
        self.kind = kind
        self.classCount = classCount
        self.inputSize = inputSize
        self.inputMean = inputMean
        self.inputStd = inputStd
        self.trunk = trunk
        self.sources = sources
        self.priorsCxcy = priorsCxcy
        self.loss = loss
        self.evaluationDetection = evaluationDetection
        self.demoDetection = demoDetection
        self.optimizerGroups = optimizerGroups
    }
}
