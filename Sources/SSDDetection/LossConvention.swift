/// Which matching, box coding and loss a model trains with.
public enum LossConvention: String, Sendable, Equatable, Codable {
    /// The tutorial's MultiBox loss: its matcher, plain L1 over positives × 4, 3:1 hard negatives.
    case tutorial
    /// torchvision's SSD loss: SSDMatcher, smooth L1 summed / foreground, 3:1 hard negatives / foreground.
    case torchvision
}
