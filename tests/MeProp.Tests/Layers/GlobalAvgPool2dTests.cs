using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Tests.Reference;
using static MeProp.Tests.Layers.LayerTestSupport;

namespace MeProp.Tests.Layers;

/// <summary>GlobalAvgPool2d against a float64 reference and finite differences (it is linear, so the central difference is exact up to round-off).</summary>
public class GlobalAvgPool2dTests
{
    /// <summary>y[n, c] = Σ_{i,j} x[n, c, i, j] / (H·W); x [N, C, H, W].</summary>
    private static double[] Reference(double[] x, int n, int c, int h, int w)
    {
        var y = new double[n * c];
        for (int p = 0; p < n * c; p++)
        {
            double sum = 0;
            for (int i = 0; i < h * w; i++) sum += x[p * h * w + i];
            y[p] = sum / (h * w);
        }
        return y;
    }

    /// <summary>n, c, h, w: square and not, odd, one pixel, ResNet-20's last 8x8.</summary>
    public static TheoryData<int, int, int, int> Shapes => new()
    {
        { 2, 3, 4, 4 }, { 1, 2, 7, 5 }, { 3, 4, 1, 1 }, { 2, 5, 8, 8 }, { 1, 1, 3, 11 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ForwardAndBackward_MatchReferenceAndFiniteDifferences(int n, int c, int h, int w)
    {
        using var compute = new ComputeContext(2);
        var rng = new Rng(Seed(n, c, h, w));
        var pool = new GlobalAvgPool2d("gap", compute);
        var x = TestData.UniformTensor(rng, n, c, h, w);
        var y = pool.Forward(x, true);
        Assert.Equal([n, c], y.ShapeArray());
        Assert.Equal([n, c], pool.OutputShape(x.Shape));
        var xd = ReferenceOps.ToDouble(x.Span);
        GradientCheck.AssertMatches(Reference(xd, n, c, h, w), y.Span, "y");

        var r = TestData.UniformTensor(rng, n, c);
        var dx = pool.Backward(r);
        Assert.NotNull(dx);
        Assert.Equal([n, c, h, w], dx.ShapeArray());
        var rd = ReferenceOps.ToDouble(r.Span);
        var numeric = GradientCheck.Numeric(xd, () => ReferenceOps.Dot(rd, Reference(xd, n, c, h, w)));
        GradientCheck.AssertMatches(numeric, dx.Span, "dx");
    }

    [Fact]
    public void ABatchOfAnotherSizeReshapesTheBuffers()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(5);
        var pool = new GlobalAvgPool2d("gap", compute);
        pool.Forward(TestData.UniformTensor(rng, 4, 3, 5, 5), true);
        var x = TestData.UniformTensor(rng, 2, 3, 5, 5);
        var y = pool.Forward(x, true);
        Assert.Equal([2, 3], y.ShapeArray());
        var dx = pool.Backward(TestData.UniformTensor(rng, 2, 3))!;
        Assert.Equal([2, 3, 5, 5], dx.ShapeArray());
    }

    [Fact]
    public void WithoutInputGradient_ReturnsNull()
    {
        using var compute = new ComputeContext(1);
        var pool = new GlobalAvgPool2d("gap", compute) { ComputeInputGradient = false };
        pool.Forward(TestData.UniformTensor(new Rng(1), 2, 3, 4, 4), true);
        Assert.Null(pool.Backward(TestData.UniformTensor(new Rng(2), 2, 3)));
    }

    [Fact]
    public void RejectsAnInputThatIsNotNchwAndAWrongGradientShape()
    {
        using var compute = new ComputeContext(1);
        var pool = new GlobalAvgPool2d("gap", compute);
        var error = Assert.Throws<ArgumentException>(() => pool.Forward(new Tensor(2, 3), true));
        Assert.Contains("gap", error.Message);
        Assert.Throws<ArgumentException>(() => pool.OutputShape([2, 3, 0, 4]));
        pool.Forward(new Tensor(2, 3, 4, 4), true);
        Assert.Throws<ArgumentException>(() => pool.Backward(new Tensor(2, 3, 1, 1)));
    }
}
