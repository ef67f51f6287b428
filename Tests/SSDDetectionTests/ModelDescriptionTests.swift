import Foundation
import SSDDetection
import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

/// The description machinery on a model small enough for finite differences: every kind of
/// layer spec (convolution with and without batch norm, each activation, depthwise, max
/// pooling, L2 norm as a side layer, squeeze-and-excitation, sequence, residual), two sources
/// with different heads. Its forward, backward, parameter tree, buffers and optimizer groups
/// all come from the description, as the zoo's models' do.
final class ModelDescriptionTests: XCTestCase {
    /// With `smooth`, every activation is hardswish, whose kinks (±3) batch-normalised values
    /// rarely reach: finite differences across a ReLU's kink at 0 measure the kink, not the
    /// gradient (the activations' own checks are in SSDLayersTests).
    static func tiny(classes: Int = 3, smooth: Bool = false) -> ModelDescription {
        func conv(_ name: String, _ i: Int, _ o: Int, _ k: Int, stride: Int = 1, groups: Int = 1, norm: Bool = true,
                  _ activation: Activation, nchw: Bool = false) -> LayerSpec {
            let activation = smooth && activation != .none ? .hardswish : activation
            return .convolution(ConvolutionSpec(name: name + ".conv", normalization: norm ? name + ".bn" : nil, inputChannels: i,
                                         outputChannels: o, kernelSize: k, stride: stride, padding: k / 2, groups: groups,
                                         bias: !norm, activation: activation, nchwOutput: nchw, initialization: .kaimingNormalFanOut))
        }
        let trunk: [LayerSpec] = [
            conv("stem", 3, 8, 3, .hardswish),
            .maxPool(kernelSize: 2, stride: 2, padding: 0, ceilMode: false),
            .residual([
                conv("block.expand", 8, 16, 1, .relu6),
                conv("block.depthwise", 16, 16, 3, groups: 16, .hardswish),
                .squeezeExcitation(name: "block.se", channels: 16, squeezeChannels: 8),
                conv("block.project", 16, 8, 1, .none),
            ]),
            conv("down", 8, 8, 3, stride: 2, norm: false, .relu),
        ]
        let maps = [FeatureMapSpec(name: "a", size: 8, scale: 0.2, aspectRatios: [1, 2, 0.5]),
                    FeatureMapSpec(name: "b", size: 4, scale: 0.5, aspectRatios: [1, 2])]
        let sources = zip([2, 3], maps).enumerated().map { index, pair -> FeatureSource in
            let (layer, map) = pair
            let boxes = map.boxesPerLocation
            return FeatureSource(
                name: map.name, layer: layer,
                side: index == 0 ? .l2Norm(name: "scale_a", channels: 8, initialScale: 2) : nil, channels: 8,
                locationHead: conv("loc_\(map.name)", 8, boxes * 4, 3, norm: false, .none, nchw: true),
                classHead: .sequence([conv("cls_\(map.name).dw", 8, 8, 3, groups: 8, .relu6),
                                      conv("cls_\(map.name).out", 8, boxes * classes, 1, norm: false, .none, nchw: true)]),
                boxesPerLocation: boxes)
        }
        return ModelDescription(kind: .compact, classCount: classes, inputSize: 16, inputMean: [0.5, 0.5, 0.5],
                                inputStd: [0.5, 0.5, 0.5], trunk: trunk, sources: sources, priorsCxcy: Priors.centreSize(maps),
                                loss: .torchvision, evaluationDetection: DetectionSettings(), demoDetection: .demo,
                                optimizerGroups: OptimizerGroups(biasLearningRateMultiplier: 1))
    }

    /// Names, roles and order follow the description; nothing is named twice.
    func testParameterTreeFollowsTheDescription() throws {
        let model = try SSDModel(architecture: Self.tiny())
        let names = model.parameters.map(\.name)
        XCTAssertEqual(Set(names).count, names.count)
        XCTAssertEqual(names.first, "scale_a", "side layers first, as the tutorial's rescale_factors")
        XCTAssertEqual(model.parameter(named: "stem.conv.weight")?.role, .weight)
        XCTAssertNil(model.parameter(named: "stem.conv.bias"), "a convolution feeding a batch norm has no bias")
        XCTAssertEqual(model.parameter(named: "stem.bn.bias")?.role, .normalizationBias)
        XCTAssertEqual(model.parameter(named: "block.se.fc1.bias")?.role, .bias)
        XCTAssertEqual(model.parameter(named: "scale_a")?.role, .scale)
        XCTAssertEqual(model.parameter(named: "block.depthwise.conv.weight")?.shape, [16, 1, 3, 3])
        XCTAssertEqual(Set(model.buffers.map(\.name)).count, 2 * 6, "running mean and variance of the six batch norms")
        XCTAssertEqual(model.priorsCxcy.count / 4, 8 * 8 * 4 + 4 * 4 * 3)
    }

    /// Every parameter's gradient against central differences, in training mode (batch statistics).
    func testEveryParameterGradientMatchesFiniteDifferences() throws {
        let model = try SSDModel(architecture: Self.tiny(smooth: true), seed: 5)
        var rng = SeededRandom(seed: 11)
        let images = Tensor(shape: [2, 3, 16, 16])
        rng.fillNormal(images)
        let priors = model.priorsCxcy.count / 4
        let a = Tensor(shape: [2, priors, 4]), b = Tensor(shape: [2, priors, 3])
        rng.fillNormal(a)
        rng.fillNormal(b)
        func loss() throws -> Double {
            let (locs, scores) = try model.forward(images)
            return weightedSum(locs, a) + weightedSum(scores, b)
        }
        model.zeroGrad()
        _ = try loss()
        try model.backward(gradLocs: a, gradScores: b)
        for p in model.parameters {
            // Upstream of the max pooling a step may switch a window's arg-max: a smaller step.
            let epsilon: Float = p.name.hasPrefix("stem.") ? 2.5e-4 : 1e-3
            try checkGradient(p.name, x: p.value, analytic: p.grad, epsilon: epsilon, samples: 12, tolerance: 2e-2, loss: loss)
        }
    }

    /// Evaluation mode folds each batch norm into its convolution: the outputs equal the
    /// unfolded layers' (convolution, batch norm with running statistics, activation), and
    /// follow a change of the weights.
    func testFoldedBatchNormEqualsTheUnfoldedLayers() throws {
        let model = try SSDModel(architecture: Self.tiny(), seed: 5)
        var rng = SeededRandom(seed: 12)
        let images = Tensor(shape: [2, 3, 16, 16])
        rng.fillNormal(images)
        for _ in 0..<3 { try model.forward(images) }  // running statistics away from (0, 1)
        model.isTraining = false
        func outputs(folded: Bool) throws -> (Tensor, Tensor) {
            model.foldsBatchNorm = folded
            let (l, s) = try model.forward(images)
            return (l.clone(), s.clone())
        }
        let (l1, s1) = try outputs(folded: true), (l2, s2) = try outputs(folded: false)
        report("folded batch norm: relative difference of locs, scores",
               "\(maxDifference(l1, l2).relative), \(maxDifference(s1, s2).relative)")
        XCTAssertLessThan(maxDifference(l1, l2).relative, 1e-5)
        XCTAssertLessThan(maxDifference(s1, s2).relative, 1e-5)
        // A new γ is folded in at the next call.
        let gamma = try XCTUnwrap(model.parameter(named: "block.project.bn.weight"))
        gamma.value.fill(0.5)
        let (l3, _) = try outputs(folded: true), (l4, _) = try outputs(folded: false)
        XCTAssertGreaterThan(maxDifference(l1, l3).absolute, 1e-4, "the outputs moved with γ")
        XCTAssertLessThan(maxDifference(l3, l4).relative, 1e-5)
    }
}
