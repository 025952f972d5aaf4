using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// Weight initialisation. We use PyTorch's defaults for Conv2d and Linear (kaiming-uniform with
/// a = sqrt(5), which works out to U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases alike),
/// so our runs start from the same distribution as the TorchSharp baseline and PyTorch users expect.
/// </summary>
public static class Initialization
{
    /// <summary>Fills <paramref name="values"/> from U(-1/sqrt(fanIn), 1/sqrt(fanIn)).</summary>
    public static void PyTorchDefault(Span<float> values, int fanIn, Rng rng)
    {
        float bound = 1f / MathF.Sqrt(fanIn);
        for (int i = 0; i < values.Length; i++) values[i] = rng.NextUniform(-bound, bound);
    }
}
