import SSDEngine

/// A learnable tensor, its gradient, and the name it has in the reference's `state_dict`
/// (`base.conv4_3.weight`, `rescale_factors`, …), so PyTorch weights map one to one.
public final class Parameter {
    /// The reference's state_dict key.
    public let name: String
    /// What the tensor is (a convolution's weight, a normalisation's β, …).
    public let role: ParameterRole
    /// The current values.
    public let value: Tensor
    /// d loss / d value, accumulated by backward passes until `zeroGrad`.
    public let grad: Tensor

    public init(name: String, role: ParameterRole, shape: [Int]) {
        self.name = name
        self.role = role
        self.value = Tensor(shape: shape)
        self.grad = Tensor(shape: shape)
    }

    /// Whether the reference's optimizer puts this parameter in its bias group (convolution and
    /// normalisation biases; `rescale_factors` is not a bias there).
    public var isBias: Bool { role.isBias }

    public var shape: [Int] { value.shape }

    public func zeroGrad() { grad.zero() }
}

/// Parameter initialisers.
public enum Initializer {
    /// Xavier/Glorot uniform, as `torch.nn.init.xavier_uniform_`: U(−a, a),
    /// a = √(6 / (fan_in + fan_out)), fans over (out, in, kh, kw).
    public static func xavierUniform(_ t: Tensor, rng: inout SeededRandom) {
        let (fanIn, fanOut) = fans(t.shape)
        let a = (6.0 / Float(fanIn + fanOut)).squareRoot()
        rng.fillUniform(t, -a, a)
    }

    /// PyTorch's default `nn.Conv2d` initialisation: weights U(−b, b) with b = 1/√fan_in
    /// (kaiming_uniform with a = √5); the same bound for biases.
    public static func pytorchDefault(weight: Tensor, bias: Tensor?, rng: inout SeededRandom) {
        let (fanIn, _) = fans(weight.shape)
        let b = 1 / Float(fanIn).squareRoot()
        rng.fillUniform(weight, -b, b)
        if let bias { rng.fillUniform(bias, -b, b) }
    }

    /// He-normal: N(0, 2 / fan_in).
    public static func heNormal(_ t: Tensor, rng: inout SeededRandom) {
        let (fanIn, _) = fans(t.shape)
        rng.fillNormal(t, std: (2 / Float(fanIn)).squareRoot())
    }

    /// Kaiming-normal with fan-out, as `nn.init.kaiming_normal_(w, mode="fan_out")`: N(0, 2 / fan_out).
    public static func kaimingNormalFanOut(_ t: Tensor, rng: inout SeededRandom) {
        let (_, fanOut) = fans(t.shape)
        rng.fillNormal(t, std: (2 / Float(fanOut)).squareRoot())
    }

    static func fans(_ shape: [Int]) -> (Int, Int) {
        guard shape.count >= 2 else { return (max(shape.first ?? 1, 1), max(shape.first ?? 1, 1)) }
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }
}
