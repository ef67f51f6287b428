import Foundation
import SSDDetection
import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

/// The SSD300's structure and its handling of bad input (no fixtures needed).
final class SSD300Tests: XCTestCase {
    func testParametersFollowTheReferenceStateDict() throws {
        let model = try SSDModel(.ssd300, classCount: 4)
        let names = model.parameters.map(\.name)
        XCTAssertEqual(names.count, 71)
        XCTAssertEqual(names.first, "rescale_factors")
        XCTAssertEqual(Set(names).count, names.count, "names are unique")
        XCTAssertEqual(model.parameter(named: "base.conv6.weight")?.shape, [1024, 512, 3, 3])
        XCTAssertEqual(model.parameter(named: "base.conv7.weight")?.shape, [1024, 1024, 1, 1])
        XCTAssertEqual(model.parameter(named: "aux_convs.conv8_2.weight")?.shape, [512, 256, 3, 3])
        XCTAssertEqual(model.parameter(named: "pred_convs.loc_conv7.weight")?.shape, [24, 1024, 3, 3])
        XCTAssertEqual(model.parameter(named: "pred_convs.cl_conv4_3.weight")?.shape, [16, 512, 3, 3])
        XCTAssertEqual(model.parameter(named: "pred_convs.cl_conv11_2.bias")?.shape, [16])
        XCTAssertEqual(model.parameter(named: "rescale_factors")?.value.array, [Float](repeating: 20, count: 512))
    }

    func testNewLayersInitialiseAsTheReference() throws {
        let model = try SSDModel(.ssd300, classCount: 21, seed: 3)
        for name in ["aux_convs.conv9_1", "pred_convs.cl_conv8_2"] {
            let w = model.parameter(named: name + ".weight")!.value
            let receptive = w.dim(2) * w.dim(3)
            let bound = (6 / Float(w.dim(1) * receptive + w.dim(0) * receptive)).squareRoot()
            let values = w.array
            XCTAssertTrue(values.allSatisfy { abs($0) <= bound }, name)
            XCTAssertGreaterThan(values.map(abs).max()!, bound * 0.95, "\(name) spans the Xavier range")
            XCTAssertEqual(model.parameter(named: name + ".bias")!.value.array.allSatisfy { $0 == 0 }, true)
        }
        // Same seed, same weights.
        XCTAssertEqual(try SSDModel(.ssd300, classCount: 21, seed: 3).parameter(named: "base.conv1_1.weight")!.value.array,
                       model.parameter(named: "base.conv1_1.weight")!.value.array)
    }

    func testBadInputIsRejected() throws {
        let model = try SSDModel(.ssd300, classCount: 3)
        XCTAssertThrowsError(try model.forward(Tensor(shape: [1, 3, 224, 224]))) { e in
            XCTAssertTrue("\(e)".contains("ssd300 input"), "\(e)")
        }
        XCTAssertThrowsError(try model.backward(gradLocs: Tensor(shape: [1, 8732, 4]), gradScores: Tensor(shape: [1, 8732, 3])))
        let weights = try SafetensorsFile(data: SafetensorsWriter.encode([("rescale_factors", Tensor(shape: [1, 512, 1, 1]))]),
                                          path: "partial.safetensors")
        XCTAssertThrowsError(try model.load(weights)) { e in
            XCTAssertEqual(e as? SafetensorsError, .missingTensor(file: "partial.safetensors", name: "base.conv1_1.weight"))
        }
    }

    func testForwardThenBackwardOnABatchAllocatesOnlyOnce() throws {
        // A second step of the same batch shape reuses every planned buffer.
        let model = try SSDModel(.ssd300, classCount: 3, algorithm: .winograd)
        let images = randomTensor([1, 3, 300, 300], seed: 1)
        let loss = MultiBoxLoss(priorsCxcy: model.priorsCxcy)
        let truth = [GroundTruth(boxes: [0.2, 0.2, 0.7, 0.6], labels: [2])]
        let gl = Tensor(shape: [1, 8732, 4]), gs = Tensor(shape: [1, 8732, 3])
        var outputs: [ObjectIdentifier] = []
        var losses: [Float] = []
        for _ in 0..<2 {
            model.zeroGrad()
            let (l, s) = try model.forward(images)
            outputs.append(ObjectIdentifier(l))
            losses.append(try loss.compute(locs: l, scores: s, truths: truth, gradLocs: gl, gradScores: gs))
            try model.backward(gradLocs: gl, gradScores: gs)
        }
        XCTAssertEqual(outputs[0], outputs[1])
        XCTAssertEqual(losses[0], losses[1], "the same input gives the same loss")
        XCTAssertTrue(model.parameters.allSatisfy { $0.grad.array.allSatisfy(\.isFinite) })
    }
}

/// The compact configuration (1/8 widths, batch normalisation) used by the demo.
final class CompactSSDTests: XCTestCase {
    func testCompactModelLearnsAFixedBatch() throws {
        let model = try SSDModel(configuration: .compact(classCount: 3), algorithm: .winograd, seed: 1)
        XCTAssertNotNil(model.parameter(named: "base.bn1_1.weight"))
        XCTAssertEqual(model.parameter(named: "base.conv1_1.weight")?.shape, [16, 3, 3, 3])  // 64/8, raised to 16
        XCTAssertEqual(model.parameter(named: "pred_convs.cl_conv7.weight")?.shape, [18, 128, 3, 3])
        XCTAssertTrue(model.buffers.contains { $0.name == "aux_convs.bn11_2.running_var" })
        let images = randomTensor([2, 3, 300, 300], seed: 2)
        let truths = [GroundTruth(boxes: [0.1, 0.2, 0.5, 0.7], labels: [1]),
                      GroundTruth(boxes: [0.4, 0.4, 0.9, 0.8, 0.05, 0.05, 0.3, 0.3], labels: [2, 1])]
        let loss = MultiBoxLoss(priorsCxcy: model.priorsCxcy)
        let sgd = SGD(parameters: model.parameters, configuration: SGDConfiguration(learningRate: 1e-2, decayIterations: []))
        let gl = Tensor(shape: [2, 8732, 4]), gs = Tensor(shape: [2, 8732, 3])
        var losses: [Float] = []
        for _ in 0..<15 {
            sgd.zeroGrad()
            let (l, s) = try model.forward(images)
            losses.append(try loss.compute(locs: l, scores: s, truths: truths, gradLocs: gl, gradScores: gs))
            try model.backward(gradLocs: gl, gradScores: gs)
            sgd.step()
        }
        print("[measure] compact model losses on a fixed batch: \(losses.first!) → \(losses.last!)")
        XCTAssertTrue(losses.allSatisfy(\.isFinite))
        XCTAssertLessThan(losses.last!, 0.5 * losses.first!, "fifteen steps on one batch should more than halve the loss")
    }

    func testCheckpointCarriesTheConfiguration() throws {
        let model = try SSDModel(configuration: .compact(classCount: 4), seed: 3)
        model.isTraining = true
        try model.forward(randomTensor([1, 3, 300, 300], seed: 4))  // moves the running statistics
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ssd-compact-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("compact.safetensors")
        try model.save(to: url, metadata: ["class_names": "a,b,c"])
        let loaded = try SSDModel.load(contentsOf: url)
        XCTAssertEqual(loaded.configuration, model.configuration)
        for ((n1, t1), (n2, t2)) in zip(model.stateTensors, loaded.stateTensors) {
            XCTAssertEqual(n1, n2)
            XCTAssertEqual(t1.array, t2.array, n1)
        }
        // Same weights, same statistics: evaluation-mode outputs agree exactly.
        model.isTraining = false
        loaded.isTraining = false
        let x = randomTensor([1, 3, 300, 300], seed: 5)
        let a = try model.forward(x).scores.array
        XCTAssertEqual(try loaded.forward(x).scores.array, a)
        XCTAssertThrowsError(try SSDModel(configuration: SSDConfiguration(classCount: 3, widthDivisor: 3)))
    }
}
