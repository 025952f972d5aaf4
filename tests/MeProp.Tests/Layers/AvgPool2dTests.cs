using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Tests.Reference;
using static MeProp.Tests.Layers.LayerTestSupport;

namespace MeProp.Tests.Layers;

/// <summary>
/// AvgPool2d against a float64 reference and finite differences. Average pooling is linear, so the
/// central difference is exact up to float64 round-off and dx needs no special inputs.
/// </summary>
public class AvgPool2dTests
{
    /// <summary>y[n, c, i, j] = Σ_{u,v &lt; K} x[n, c, i·S + u, j·S + v] / K²; x [N, C, H, W], floor mode.</summary>
    private static double[] Reference(double[] x, int n, int c, int h, int w, int k, int s)
    {
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
        var y = new double[n * c * oh * ow];
        for (int p = 0; p < n * c; p++)
        for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
        {
            double sum = 0;
            for (int u = 0; u < k; u++)
            for (int v = 0; v < k; v++)
                sum += x[(p * h + i * s + u) * w + j * s + v];
            y[(p * oh + i) * ow + j] = sum / (k * k);
        }
        return y;
    }

    /// <summary>n, c, h, w, kernel, stride: odd and non-square sizes, floor mode, overlapping windows, the 2x2/2 SIMD path (OW &gt;= 8).</summary>
    public static TheoryData<int, int, int, int, int, int> Cases => new()
    {
        { 1, 1, 4, 4, 2, 2 },
        { 3, 2, 7, 5, 2, 2 },    // floor: last row and column unused
        { 2, 2, 9, 19, 2, 2 },   // OW = 9: SIMD with an overlapping last group, odd width
        { 1, 3, 9, 6, 3, 3 },
        { 3, 2, 7, 8, 3, 2 },    // overlapping windows: an input in up to four windows
        { 1, 2, 5, 11, 2, 1 },
        { 3, 1, 3, 3, 3, 1 },    // one window per plane
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardAndBackward_MatchReferenceAndFiniteDifferences(int n, int c, int h, int w, int k, int s)
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(Seed(n, c, h, w, k, s));
        var pool = new AvgPool2d("pool", k, s, compute);
        var x = TestData.UniformTensor(rng, n, c, h, w);
        var y = pool.Forward(x, true);
        var xd = ReferenceOps.ToDouble(x.Span);
        Assert.Equal([n, c, (h - k) / s + 1, (w - k) / s + 1], y.ShapeArray());
        Assert.Equal(y.ShapeArray(), pool.OutputShape(x.Shape));
        GradientCheck.AssertMatches(Reference(xd, n, c, h, w, k, s), y.Span, "y");

        var r = TestData.UniformTensor(rng, y.ShapeArray());
        var dx = pool.Backward(r);
        Assert.NotNull(dx);
        Assert.Equal([n, c, h, w], dx.ShapeArray());
        var rd = ReferenceOps.ToDouble(r.Span);
        var numeric = GradientCheck.Numeric(xd, () => ReferenceOps.Dot(rd, Reference(xd, n, c, h, w, k, s)));
        GradientCheck.AssertMatches(numeric, dx.Span, "dx");
    }

    [Fact]
    public void Backward_OverwritesTheInputGradientOfAPreviousCall()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(42);
        var pool = new AvgPool2d("pool", 3, 2, compute);
        var x = TestData.UniformTensor(rng, 2, 2, 7, 7);
        pool.Forward(x, true);
        var r = TestData.UniformTensor(rng, 2, 2, 3, 3);
        var first = Copy(pool.Backward(r)!);
        var second = Copy(pool.Backward(r)!);
        Assert.Equal(first, second);
    }

    [Fact]
    public void WithoutInputGradient_ReturnsNull()
    {
        using var compute = new ComputeContext(1);
        var pool = new AvgPool2d("pool", 2, 2, compute) { ComputeInputGradient = false };
        var y = pool.Forward(TestData.UniformTensor(new Rng(1), 1, 1, 4, 4), true);
        Assert.Null(pool.Backward(TestData.UniformTensor(new Rng(2), y.ShapeArray())));
    }

    [Fact]
    public void ResultsAreIdenticalWithOneAndThreeThreads()
    {
        float[]? y1 = null, dx1 = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var compute = new ComputeContext(threads);
            var rng = new Rng(43);
            var pool = new AvgPool2d("pool", 2, 2, compute);
            var x = TestData.UniformTensor(rng, 4, 5, 17, 18);
            var y = Copy(pool.Forward(x, true));
            var dx = Copy(pool.Backward(TestData.UniformTensor(rng, pool.OutputShape(x.Shape)))!);
            if (y1 is null) (y1, dx1) = (y, dx);
            else
            {
                Assert.Equal(y1, y);
                Assert.Equal(dx1, dx);
            }
        }
    }

    [Fact]
    public void RejectsBadSettingsAnInputSmallerThanTheWindowAndAWrongGradientShape()
    {
        using var compute = new ComputeContext(1);
        Assert.Throws<ArgumentException>(() => new AvgPool2d("pool", 0, 1, compute));
        Assert.Throws<ArgumentException>(() => new AvgPool2d("pool", 2, 0, compute));
        var pool = new AvgPool2d("pool", 3, 3, compute);
        var error = Assert.Throws<ArgumentException>(() => pool.Forward(new Tensor(1, 1, 2, 5), true));
        Assert.Contains("pool", error.Message);
        Assert.Throws<ArgumentException>(() => pool.Forward(new Tensor(4, 9), true));
        pool.Forward(new Tensor(1, 1, 6, 6), true);
        Assert.Throws<ArgumentException>(() => pool.Backward(new Tensor(1, 1, 3, 3)));
    }
}
