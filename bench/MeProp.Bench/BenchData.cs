using MeProp.Tensors;

namespace MeProp.Bench;

/// <summary>Seeded inputs, so every run of a benchmark sees the same values.</summary>
internal static class BenchData
{
    /// <summary>Standard normal values.</summary>
    public static float[] Normal(ulong seed, int length)
    {
        var rng = new Rng(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = (float)rng.NextNormal();
        return values;
    }

    /// <summary>
    /// Gradient-like values: each entry is zero with probability <paramref name="zeroFraction"/>
    /// (what ReLU and max-pool backward leave behind), otherwise standard normal.
    /// </summary>
    public static float[] GradientLike(ulong seed, int length, double zeroFraction = 0.85)
    {
        var rng = new Rng(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++)
            values[i] = rng.NextDouble() < zeroFraction ? 0f : (float)rng.NextNormal();
        return values;
    }

    /// <summary>|values|, the scores a top-k selection ranks.</summary>
    public static float[] Magnitudes(float[] values) => Array.ConvertAll(values, MathF.Abs);
}
