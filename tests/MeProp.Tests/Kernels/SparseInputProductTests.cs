using MeProp.Kernels;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Tests.Kernels;

public class SparseInputProductTests
{
    // (examples, in, out, input density): the paper network's fc1 and the MLP's hidden width, outputs at,
    // below and between whole blocks of 16 (a partial last block takes the narrow path), an empty input,
    // a dense one.
    public static TheoryData<int, int, int, double> Shapes => new()
    {
        { 10, 3136, 1024, 0.05 },
        { 7, 500, 500, 0.3 },
        { 3, 37, 16, 0.5 },
        { 4, 29, 33, 0.2 },
        { 2, 17, 10, 0.4 },
        { 5, 64, 48, 0 },
        { 3, 20, 40, 1 },
        { 1, 1, 1, 1 },
    };

    private static float[] SparseInput(Rng rng, int length, double density)
    {
        var x = new float[length];
        for (int i = 0; i < length; i++) x[i] = rng.NextDouble() < density ? rng.NextUniform(-1, 1) : (i % 2 == 0 ? 0f : -0f);
        return x;
    }

    private static float[] Run(float[] x, int examples, float[] weight, int inFeatures, int outFeatures, int threads)
    {
        using var pool = new WorkerPool(threads);
        var nonZeros = new SparseGradient();
        NonZeroGradient.Gather(x, 1, examples, inFeatures, nonZeros, pool);
        // The output starts as NaN: every entry must be written.
        var y = Enumerable.Repeat(float.NaN, examples * outFeatures).ToArray();
        SparseInputProduct.Multiply(nonZeros, weight, inFeatures, outFeatures, y, new float[SparseInputProduct.PanelLength(inFeatures, threads)], pool);
        return y;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Multiply_MatchesTheDenseProduct(int examples, int inFeatures, int outFeatures, double density)
    {
        var rng = new Rng((ulong)(examples * 7919 + inFeatures * 31 + outFeatures));
        var x = SparseInput(rng, examples * inFeatures, density);
        var weight = TestData.Uniform(rng, outFeatures * inFeatures);
        var expected = new float[examples * outFeatures];
        SparseInputProductReference.Multiply(x, examples, weight, inFeatures, outFeatures, expected);
        var actual = Run(x, examples, weight, inFeatures, outFeatures, 2);
        // Float32 sums of up to `in` terms of magnitude <= 1 against float64.
        TestData.AssertClose(expected, actual, 1e-6 * (inFeatures + 1), 1e-5, $"{examples} x {inFeatures} -> {outFeatures}, density {density}");
    }

    private static float[] RunWeightGradient(float[] x, int examples, float[] dy, float[] start, int inFeatures, int outFeatures, int threads)
    {
        using var pool = new WorkerPool(threads);
        var nonZeros = new SparseGradient();
        NonZeroGradient.Gather(x, 1, examples, inFeatures, nonZeros, pool);
        var dW = (float[])start.Clone();
        SparseInputProduct.AddWeightGradient(nonZeros, dy, inFeatures, outFeatures, dW, new float[SparseInputProduct.PanelLength(inFeatures, threads)], pool);
        return dW;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void AddWeightGradient_MatchesTheDenseProduct(int examples, int inFeatures, int outFeatures, double density)
    {
        var rng = new Rng((ulong)(examples * 31 + inFeatures * 7 + outFeatures));
        var x = SparseInput(rng, examples * inFeatures, density);
        var dy = TestData.Uniform(rng, examples * outFeatures);
        // dW is added into: it starts from values already there.
        var start = TestData.Uniform(rng, outFeatures * inFeatures);
        var expected = (float[])start.Clone();
        SparseInputProductReference.AddWeightGradient(x, examples, dy, inFeatures, outFeatures, expected);
        var actual = RunWeightGradient(x, examples, dy, start, inFeatures, outFeatures, 2);
        TestData.AssertClose(expected, actual, 1e-6 * (examples + 2), 1e-5, $"{examples} x {inFeatures} -> {outFeatures}, density {density}");
    }

    private static float[] RunInputGradient(float[] x, int examples, float[] dy, float[] weight, int inFeatures, int outFeatures, int threads)
    {
        using var pool = new WorkerPool(threads);
        // dx starts as NaN: every entry, zero or not, must be written.
        var dx = Enumerable.Repeat(float.NaN, examples * inFeatures).ToArray();
        SparseInputProduct.InputGradient(x, dy, weight, examples, inFeatures, outFeatures, dx,
            new float[SparseInputProduct.InputGradientPanelLength(outFeatures, threads)], pool);
        return dx;
    }

    // Input widths at, below and between whole blocks of 16 columns (a partial last block), output counts
    // not a multiple of 8 (the transpose's scalar edge), and the shapes above.
    public static TheoryData<int, int, int, double> InputGradientShapes
    {
        get
        {
            var shapes = Shapes;
            shapes.Add(6, 45, 13, 0.3);
            shapes.Add(3, 8, 7, 0.6);
            shapes.Add(2, 100, 1, 0.5);
            return shapes;
        }
    }

    [Theory]
    [MemberData(nameof(InputGradientShapes))]
    public void InputGradient_IsTheDenseProductAtTheNonZeros(int examples, int inFeatures, int outFeatures, double density)
    {
        var rng = new Rng((ulong)(examples * 131 + inFeatures * 17 + outFeatures));
        var x = SparseInput(rng, examples * inFeatures, density);
        var dy = TestData.Uniform(rng, examples * outFeatures);
        var weight = TestData.Uniform(rng, outFeatures * inFeatures);
        var expected = new float[examples * inFeatures];
        SparseInputProductReference.InputGradient(x, dy, weight, examples, inFeatures, outFeatures, expected);
        var actual = RunInputGradient(x, examples, dy, weight, inFeatures, outFeatures, 2);
        TestData.AssertClose(expected, actual, 1e-6 * (outFeatures + 1), 1e-5, $"{examples} x {inFeatures} <- {outFeatures}, density {density}");
        for (int i = 0; i < x.Length; i++)
            if (x[i] == 0f) Assert.True(actual[i] == 0f, $"dx[{i}] = {actual[i]} where the input is zero");
    }

    [Theory]
    [InlineData(6, 300, 70, 0.2)]
    [InlineData(1, 37, 129, 0.5)]
    [InlineData(13, 3136, 1024, 0.05)] // the paper network's fc1
    [InlineData(100, 785, 65, 0.12)]
    public void Results_DoNotDependOnTheThreadCount(int examples, int inFeatures, int outFeatures, double density)
    {
        var rng = new Rng(3);
        var x = SparseInput(rng, examples * inFeatures, density);
        var weight = TestData.Uniform(rng, outFeatures * inFeatures);
        var dy = TestData.Uniform(rng, examples * outFeatures);
        foreach (int threads in new[] { 2, 3, 5 })
        {
            Assert.Equal(Run(x, examples, weight, inFeatures, outFeatures, 1), Run(x, examples, weight, inFeatures, outFeatures, threads));
            Assert.Equal(RunWeightGradient(x, examples, dy, weight, inFeatures, outFeatures, 1), RunWeightGradient(x, examples, dy, weight, inFeatures, outFeatures, threads));
            Assert.Equal(RunInputGradient(x, examples, dy, weight, inFeatures, outFeatures, 1), RunInputGradient(x, examples, dy, weight, inFeatures, outFeatures, threads));
        }
    }
}
