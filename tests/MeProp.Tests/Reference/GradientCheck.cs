using MeProp.Tensors;

namespace MeProp.Tests.Reference;

/// <summary>
/// Central finite differences on a float64 reference forward, and the tolerances a float32 layer is
/// held to against a float64 oracle.
/// </summary>
internal static class GradientCheck
{
    /// <summary>
    /// Step of the central difference. The reference ops are linear (conv, linear, flatten, dropout),
    /// piecewise linear with kinks farther than Step away (max-pool with values spaced 0.01 apart, ReLU
    /// with |x| &gt;= 0.05), or smooth (sigmoid, tanh, softmax), so the truncation error is at most
    /// ~Step²·|f'''|/6 ≈ 2e-7 and the float64 round-off ~1e-16·|L|/Step ≈ 1e-12.
    /// </summary>
    public const double Step = 1e-3;

    /// <summary>
    /// Float32 layer against float64 oracle: |ours - oracle| &lt;= 2e-5 + 1e-4·|oracle|. Inputs are
    /// O(1) and every output or gradient entry is a sum of at most a few hundred O(1) products, so
    /// float32 rounding stays below ~1e-5 absolute; a wrong index, a missing term or a missing factor
    /// is off by O(0.01) or more.
    /// </summary>
    public const double Absolute = 2e-5, Relative = 1e-4;

    /// <summary>dL/dv[i] ≈ (L(v + h·e_i) - L(v - h·e_i)) / 2h for every i; <paramref name="v"/> is restored.</summary>
    public static double[] Numeric(double[] v, Func<double> loss)
    {
        var gradient = new double[v.Length];
        for (int i = 0; i < v.Length; i++)
        {
            double saved = v[i];
            v[i] = saved + Step;
            double plus = loss();
            v[i] = saved - Step;
            double minus = loss();
            v[i] = saved;
            gradient[i] = (plus - minus) / (2 * Step);
        }
        return gradient;
    }

    /// <summary>Asserts float32 <paramref name="actual"/> matches float64 <paramref name="expected"/> within the stated tolerance.</summary>
    public static void AssertMatches(double[] expected, ReadOnlySpan<float> actual, string what,
        double absolute = Absolute, double relative = Relative)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        double worst = 0;
        int worstIndex = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            double excess = diff - (absolute + relative * Math.Abs(expected[i]));
            if (!(excess <= 0) && (worstIndex < 0 || excess > worst)) { worst = excess; worstIndex = i; }
        }
        if (worstIndex >= 0)
            Assert.Fail($"{what}: element {worstIndex} is {actual[worstIndex]}, expected {expected[worstIndex]:R} " +
                        $"(diff {Math.Abs(actual[worstIndex] - expected[worstIndex]):g3}, tolerance {absolute:g2} + {relative:g2}·|expected|)");
    }

    /// <summary>A tensor of distinct values: a shuffled grid 0.01 apart (plus jitter under 0.005), centred on zero.</summary>
    public static Tensor DistinctTensor(Rng rng, params int[] shape)
    {
        var t = new Tensor(shape);
        var order = new int[t.Length];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        rng.Shuffle(order);
        for (int i = 0; i < order.Length; i++)
            t.Span[i] = (float)((order[i] - order.Length / 2.0) * 0.01 + rng.NextDouble() * 0.005);
        return t;
    }

    /// <summary>A tensor from U(-1, 1) with every |value| &gt;= <paramref name="gap"/> (keeps clear of kinks at zero).</summary>
    public static Tensor AwayFromZero(Rng rng, double gap, params int[] shape)
    {
        var t = new Tensor(shape);
        for (int i = 0; i < t.Length; i++)
        {
            double u = rng.NextUniform(-1f, 1f);
            t.Span[i] = (float)(Math.Sign(u == 0 ? 1 : u) * (gap + (1 - gap) * Math.Abs(u)));
        }
        return t;
    }

    public static Tensor TensorOf(float[] data, params int[] shape) => new(data, shape);
}
