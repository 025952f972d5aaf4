namespace MeProp.Tensors;

/// <summary>
/// A learnable tensor and its gradient. Backward adds into <see cref="Gradient"/>; the optimizer
/// reads it and clears it in the same pass.
/// </summary>
public sealed class Parameter(string name, params int[] shape)
{
    /// <summary>Name used in checkpoints, PyTorch style ("conv1.weight").</summary>
    public string Name { get; } = name;
    public Tensor Value { get; } = new(shape);
    public Tensor Gradient { get; } = new(shape);

    /// <summary>
    /// Set by an optimizer that applies its update during backward (<see cref="IGradientReadyHook"/>);
    /// the layer that owns the parameter tells it when the gradient is ready. Null: nobody listens.
    /// </summary>
    public IGradientReadyHook? GradientHook { get; set; }
}
