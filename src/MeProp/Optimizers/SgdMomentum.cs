using MeProp.Tensors;

namespace MeProp.Optimizers;

/// <summary>
/// SGD with momentum in PyTorch's convention: v = μ·v + g; p -= lr·v (v starts at zero, so the
/// first step is plain SGD). One fused pass per parameter; gradients are zeroed in it.
/// </summary>
public sealed class SgdMomentum : IOptimizer
{
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly Tensor[] _velocity;

    public SgdMomentum(IReadOnlyList<Parameter> parameters, float learningRate, float momentum = 0.9f)
    {
        if (!(learningRate > 0)) throw new ArgumentException($"SGD: learning rate must be positive, got {learningRate}");
        if (!(momentum >= 0 && momentum < 1)) throw new ArgumentException($"SGD: momentum must be in [0, 1), got {momentum}");
        _parameters = parameters;
        LearningRate = learningRate;
        Momentum = momentum;
        _velocity = parameters.Select(p => new Tensor(p.Value.ShapeArray())).ToArray();
    }

    public float LearningRate { get; }
    public float Momentum { get; }
    public long Step { get; private set; }

    public void Update()
    {
        Step++;
        for (int i = 0; i < _parameters.Count; i++)
        {
            var p = _parameters[i].Value.Span;
            var g = _parameters[i].Gradient.Span;
            var v = _velocity[i].Span;
            for (int j = 0; j < p.Length; j++)
            {
                v[j] = Momentum * v[j] + g[j];
                p[j] -= LearningRate * v[j];
                g[j] = 0;
            }
        }
    }

    public IEnumerable<(string Name, Tensor State)> State()
    {
        for (int i = 0; i < _parameters.Count; i++) yield return (_parameters[i].Name + ".momentum_buffer", _velocity[i]);
    }

    public void RestoreStep(long step) => Step = step;
}
