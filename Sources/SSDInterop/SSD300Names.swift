import Foundation

/// The tensor names and ranks of the reference SSD300's `state_dict()` (the tutorial's
/// `model.SSD300`: VGGBase `base.*`, AuxiliaryConvolutions `aux_convs.*`,
/// PredictionConvolutions `pred_convs.*`, the L2-norm `rescale_factors`, and its
/// `priors_cxcy` attribute), used to recognise a checkpoint before converting it.
///
/// Contract: `check` accepts a list in which every name is one of the reference's, with the
/// reference's rank and a floating-point storage; a subset is accepted (a model with fewer
/// layers, like the tutorial-style fixture), an empty list or any other name is not. Sizes
/// (channels, classes) are not checked here: the model loader does that.
public enum SSD300Names {
    static let base = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3",
                       "conv5_1", "conv5_2", "conv5_3", "conv6", "conv7"]
    static let auxiliary = ["conv8_1", "conv8_2", "conv9_1", "conv9_2", "conv10_1", "conv10_2", "conv11_1", "conv11_2"]
    static let sources = ["conv4_3", "conv7", "conv8_2", "conv9_2", "conv10_2", "conv11_2"]

    /// Every reference name with its rank.
    public static let ranks: [String: Int] = {
        var ranks: [String: Int] = ["rescale_factors": 4, "priors_cxcy": 2]
        var convolutions = base.map { "base.\($0)" } + auxiliary.map { "aux_convs.\($0)" }
        for source in sources { convolutions += ["pred_convs.loc_\(source)", "pred_convs.cl_\(source)"] }
        for name in convolutions {
            ranks[name + ".weight"] = 4
            ranks[name + ".bias"] = 1
        }
        return ranks
    }()

    /// What a checkpoint is expected to hold, for error messages.
    static let expected = "the reference SSD300's tensors (base.conv1_1 … base.conv7, aux_convs.conv8_1 … aux_convs.conv11_2, "
        + "pred_convs.loc_* / pred_convs.cl_* of conv4_3, conv7, conv8_2 … conv11_2, each .weight and .bias; rescale_factors; priors_cxcy)"

    /// Throws `InteropError.unexpectedContent` naming `file` and the first offending tensor
    /// unless every reference names an SSD300 tensor of the right rank and a float dtype.
    public static func check(_ references: [(name: String, tensor: TorchTensorReference)], file: String) throws {
        guard !references.isEmpty else {
            throw InteropError.unexpectedContent(file: file, message: "not an SSD300 checkpoint: no model tensors; expected \(expected)")
        }
        let unknown = references.filter { ranks[$0.name] == nil }.map(\.name)
        if let first = unknown.first {
            let others = unknown.count > 1 ? " (and \(unknown.count - 1) other unknown names)" : ""
            let known = references.count - unknown.count
            throw InteropError.unexpectedContent(
                file: file,
                message: "not an SSD300 checkpoint: tensor '\(first)'\(others) is not an SSD300 tensor (\(known) of \(references.count) names are); "
                    + "expected \(expected). `ssd convert pth` converts any state dict under its own names")
        }
        for (name, tensor) in references {
            let rank = ranks[name] ?? 0
            guard tensor.shape.count == rank else {
                throw InteropError.unexpectedContent(file: file, message: "tensor '\(name)' has shape \(tensor.shape), expected \(rank) dimensions in an SSD300")
            }
            guard [.float32, .float16, .bfloat16, .float64].contains(tensor.storage.dtype) else {
                throw InteropError.unexpectedContent(file: file, message: "tensor '\(name)' has dtype \(tensor.storage.dtype.rawValue), expected a float type")
            }
        }
    }
}
