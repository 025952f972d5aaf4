using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Tests.Reference;
using static MeProp.Tests.Layers.LayerTestSupport;

namespace MeProp.Tests.Layers;

/// <summary>
/// Linear against the float64 reference: forward values, and dx, dW, db against central differences
/// of L = Σ r·y. Tolerance: <see cref="GradientCheck.Absolute"/> + <see cref="GradientCheck.Relative"/>·|oracle|.
/// </summary>
public class LinearTests
{
    /// <summary>batch, in, out: batch 1 and 3, odd widths, one wider than a SIMD vector and a GEMM tile.</summary>
    public static TheoryData<int, int, int> Cases => new()
    {
        { 1, 1, 1 }, { 1, 7, 3 }, { 3, 5, 9 }, { 3, 33, 17 }, { 2, 70, 1 }, { 3, 1, 40 },
    };

    private static (Linear Layer, Tensor X) Make(ComputeContext compute, Rng rng, int n, int inFeatures, int outFeatures)
    {
        var linear = new Linear("fc", inFeatures, outFeatures, compute, rng);
        Randomize(linear.Weight, rng);
        Randomize(linear.Bias, rng);
        return (linear, TestData.UniformTensor(rng, n, inFeatures));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Forward_MatchesReference(int n, int inFeatures, int outFeatures)
    {
        using var compute = new ComputeContext(1);
        var (linear, x) = Make(compute, new Rng(Seed(n, inFeatures, outFeatures)), n, inFeatures, outFeatures);
        var y = linear.Forward(x, true);
        Assert.Equal([n, outFeatures], y.ShapeArray());
        var expected = ReferenceOps.Linear(ReferenceOps.ToDouble(x.Span), n, inFeatures,
            ReferenceOps.ToDouble(linear.Weight.Value.Span), ReferenceOps.ToDouble(linear.Bias.Value.Span), outFeatures);
        GradientCheck.AssertMatches(expected, y.Span, "y");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Backward_MatchesFiniteDifferences(int n, int inFeatures, int outFeatures)
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(Seed(n, inFeatures, outFeatures) + 1);
        var (linear, x) = Make(compute, rng, n, inFeatures, outFeatures);
        var r = TestData.UniformTensor(rng, linear.Forward(x, true).ShapeArray());
        var dx = linear.Backward(r);
        Assert.NotNull(dx);
        Assert.Equal([n, inFeatures], dx.ShapeArray());
        double[] xd = ReferenceOps.ToDouble(x.Span), wd = ReferenceOps.ToDouble(linear.Weight.Value.Span),
            bd = ReferenceOps.ToDouble(linear.Bias.Value.Span), rd = ReferenceOps.ToDouble(r.Span);
        double Loss() => ReferenceOps.Dot(rd, ReferenceOps.Linear(xd, n, inFeatures, wd, bd, outFeatures));
        GradientCheck.AssertMatches(GradientCheck.Numeric(xd, Loss), dx.Span, "dx");
        GradientCheck.AssertMatches(GradientCheck.Numeric(wd, Loss), linear.Weight.Gradient.Span, "dW");
        GradientCheck.AssertMatches(GradientCheck.Numeric(bd, Loss), linear.Bias.Gradient.Span, "db");
    }

    [Fact]
    public void Backward_AddsIntoParameterGradients()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(31);
        var (linear, x) = Make(compute, rng, 3, 9, 5);
        var r = TestData.UniformTensor(rng, 3, 5);
        linear.Forward(x, true);
        linear.Backward(r);
        float[] dW1 = Gradient(linear.Weight), db1 = Gradient(linear.Bias);
        Assert.Contains(dW1, v => v != 0);
        linear.Backward(r);
        TestData.AssertClose(dW1.Select(v => 2 * v).ToArray(), linear.Weight.Gradient.Span, 1e-6, 1e-6, "dW after two backwards");
        TestData.AssertClose(db1.Select(v => 2 * v).ToArray(), linear.Bias.Gradient.Span, 1e-6, 1e-6, "db after two backwards");
    }

    [Fact]
    public void WithoutInputGradient_ReturnsNullAndTheSameParameterGradients()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(32);
        var (linear, x) = Make(compute, rng, 3, 9, 5);
        var r = TestData.UniformTensor(rng, 3, 5);
        linear.Forward(x, true);
        Assert.NotNull(linear.Backward(r));
        float[] dW = Gradient(linear.Weight), db = Gradient(linear.Bias);
        linear.Weight.Gradient.Clear();
        linear.Bias.Gradient.Clear();
        linear.ComputeInputGradient = false;
        Assert.Null(linear.Backward(r));
        Assert.Equal(dW, Gradient(linear.Weight));
        Assert.Equal(db, Gradient(linear.Bias));
    }

    [Fact]
    public void ResultsAreIdenticalWithOneAndThreeThreads()
    {
        float[]? y1 = null, dx1 = null, dW1 = null, db1 = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var compute = new ComputeContext(threads);
            var rng = new Rng(33);
            var (linear, x) = Make(compute, rng, 37, 300, 129);
            var y = Copy(linear.Forward(x, true));
            var dx = Copy(linear.Backward(TestData.UniformTensor(rng, 37, 129))!);
            if (y1 is null) (y1, dx1, dW1, db1) = (y, dx, Gradient(linear.Weight), Gradient(linear.Bias));
            else
            {
                Assert.Equal(y1, y);
                Assert.Equal(dx1, dx);
                Assert.Equal(dW1, Gradient(linear.Weight));
                Assert.Equal(db1, Gradient(linear.Bias));
            }
        }
    }

    [Fact]
    public void RejectsWrongShapesAndBackwardBeforeForward()
    {
        using var compute = new ComputeContext(1);
        var linear = new Linear("fc", 4, 3, compute, new Rng(1));
        Assert.Throws<InvalidOperationException>(() => linear.Backward(new Tensor(2, 3)));
        Assert.Throws<ArgumentException>(() => linear.Forward(new Tensor(2, 5), true));
        linear.Forward(new Tensor(2, 4), true);
        Assert.Throws<ArgumentException>(() => linear.Backward(new Tensor(2, 4)));
    }
}
