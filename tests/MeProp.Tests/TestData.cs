using MeProp.Tensors;

namespace MeProp.Tests;

/// <summary>Seeded random inputs and tolerance checks shared by the tests.</summary>
internal static class TestData
{
    public static float[] Uniform(Rng rng, int length, float low = -1f, float high = 1f)
    {
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = rng.NextUniform(low, high);
        return values;
    }

    public static Tensor UniformTensor(Rng rng, params int[] shape)
    {
        var t = new Tensor(shape);
        for (int i = 0; i < t.Length; i++) t.Span[i] = rng.NextUniform(-1f, 1f);
        return t;
    }

    /// <summary>Asserts |actual - expected| &lt;= absolute + relative * |expected| element-wise.</summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double absolute, double relative, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs((double)actual[i] - expected[i]);
            if (!(diff <= absolute + relative * Math.Abs(expected[i])))
                Assert.Fail($"{what}: element {i} is {actual[i]}, expected {expected[i]} (diff {diff:g3})");
        }
    }

    public static void AssertClose(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double absolute, double relative, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            if (!(diff <= absolute + relative * Math.Abs(expected[i])))
                Assert.Fail($"{what}: element {i} is {actual[i]}, expected {expected[i]} (diff {diff:g3})");
        }
    }
}
