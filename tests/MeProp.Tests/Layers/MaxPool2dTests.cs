using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Tests.Reference;
using static MeProp.Tests.Layers.LayerTestSupport;

namespace MeProp.Tests.Layers;

/// <summary>
/// MaxPool2d against the float64 reference (first maximum in row-major window order wins ties).
/// Inputs for the gradient check are distinct and spaced 0.01 apart, so a central difference with step
/// 1e-3 never moves a maximum; forward and dx are then exact (max-pool only copies and adds values).
/// </summary>
public class MaxPool2dTests
{
    /// <summary>n, c, h, w, kernel, stride (0 = kernel): odd and non-square sizes, floor mode, overlapping windows.</summary>
    public static TheoryData<int, int, int, int, int, int> Cases => new()
    {
        { 1, 1, 4, 4, 2, 0 },
        { 3, 2, 7, 5, 2, 0 },  // floor: last row and column unused
        { 1, 3, 9, 6, 3, 0 },
        { 3, 2, 7, 8, 3, 2 },  // overlapping windows: one input can win two windows
        { 1, 2, 5, 11, 2, 1 },
        { 3, 1, 3, 3, 3, 0 },  // one window per plane
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardAndBackward_MatchReferenceAndFiniteDifferences(int n, int c, int h, int w, int k, int stride)
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(Seed(n, c, h, w, k, stride));
        var pool = new MaxPool2d("pool", k, compute, stride);
        int s = pool.Stride;
        var x = GradientCheck.DistinctTensor(rng, n, c, h, w);
        var y = pool.Forward(x, true);
        var xd = ReferenceOps.ToDouble(x.Span);
        var (expected, _) = ReferenceOps.MaxPool2d(xd, n, c, h, w, k, s);
        Assert.Equal([n, c, (h - k) / s + 1, (w - k) / s + 1], y.ShapeArray());
        Assert.Equal(expected, ReferenceOps.ToDouble(y.Span));

        var r = TestData.UniformTensor(rng, y.ShapeArray());
        var dx = pool.Backward(r);
        Assert.NotNull(dx);
        Assert.Equal([n, c, h, w], dx.ShapeArray());
        var rd = ReferenceOps.ToDouble(r.Span);
        var numeric = GradientCheck.Numeric(xd, () => ReferenceOps.Dot(rd, ReferenceOps.MaxPool2d(xd, n, c, h, w, k, s).Y));
        GradientCheck.AssertMatches(numeric, dx.Span, "dx");
    }

    [Fact]
    public void Ties_RouteTheGradientToTheFirstMaximumInRowMajorOrder()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(41);
        int n = 2, c = 3, h = 7, w = 6, k = 3, s = 2;
        // Values from {0, 1, 2}: most windows hold tied maxima.
        var x = new Tensor(n, c, h, w);
        for (int i = 0; i < x.Length; i++) x.Span[i] = rng.NextInt(3);
        var pool = new MaxPool2d("pool", k, compute, s);
        var y = pool.Forward(x, true);
        var r = TestData.UniformTensor(rng, y.ShapeArray());
        var dx = pool.Backward(r)!;

        var (expectedY, argmax) = ReferenceOps.MaxPool2d(ReferenceOps.ToDouble(x.Span), n, c, h, w, k, s);
        Assert.Equal(expectedY, ReferenceOps.ToDouble(y.Span));
        int planeIn = h * w, planeOut = y.Length / (n * c);
        var expectedDx = new double[x.Length];
        for (int i = 0; i < y.Length; i++) expectedDx[i / planeOut * planeIn + argmax[i]] += r.Span[i];
        GradientCheck.AssertMatches(expectedDx, dx.Span, "dx", 1e-6, 1e-6);
    }

    [Fact]
    public void Backward_OverwritesTheInputGradientOfAPreviousCall()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(42);
        var pool = new MaxPool2d("pool", 2, compute);
        var x = GradientCheck.DistinctTensor(rng, 2, 2, 6, 4);
        pool.Forward(x, true);
        var r = TestData.UniformTensor(rng, 2, 2, 3, 2);
        var first = Copy(pool.Backward(r)!);
        var second = Copy(pool.Backward(r)!);
        Assert.Equal(first, second);
    }

    [Fact]
    public void WithoutInputGradient_ReturnsNull()
    {
        using var compute = new ComputeContext(1);
        var pool = new MaxPool2d("pool", 2, compute) { ComputeInputGradient = false };
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
            var pool = new MaxPool2d("pool", 3, compute, 2);
            var x = GradientCheck.DistinctTensor(rng, 4, 5, 9, 8);
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
    public void RejectsAnInputSmallerThanTheWindowAndAWrongGradientShape()
    {
        using var compute = new ComputeContext(1);
        var pool = new MaxPool2d("pool", 3, compute);
        Assert.Throws<ArgumentException>(() => pool.Forward(new Tensor(1, 1, 2, 5), true));
        pool.Forward(new Tensor(1, 1, 6, 6), true);
        Assert.Throws<ArgumentException>(() => pool.Backward(new Tensor(1, 1, 3, 3)));
    }
}
