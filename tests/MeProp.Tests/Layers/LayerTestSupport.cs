using MeProp.Layers;
using MeProp.Tensors;

namespace MeProp.Tests.Layers;

/// <summary>Small helpers shared by the layer tests.</summary>
internal static class LayerTestSupport
{
    /// <summary>Overwrites a parameter's value with U(-1, 1), so weights are O(1) rather than the small init.</summary>
    public static void Randomize(Parameter p, Rng rng) => TestData.Uniform(rng, p.Value.Length).CopyTo(p.Value.Span);

    public static float[] Copy(Tensor t) => t.Span.ToArray();

    public static float[] Gradient(Parameter p) => p.Gradient.Span.ToArray();

    /// <summary>A seed that differs for every theory row.</summary>
    public static ulong Seed(params int[] values)
    {
        ulong s = 1469598103934665603UL;
        foreach (int v in values) s = (s ^ (ulong)v) * 1099511628211UL;
        return s;
    }
}
