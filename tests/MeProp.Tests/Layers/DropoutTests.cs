using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Tests.Reference;

namespace MeProp.Tests.Layers;

/// <summary>Inverted dropout: identity at p = 0 and in evaluation; otherwise y = x·mask, dx = dy·mask, E[y] = x.</summary>
public class DropoutTests
{
    [Fact]
    public void ProbabilityZero_IsTheIdentityForwardAndBackward()
    {
        var rng = new Rng(61);
        var dropout = new Dropout("drop", 0f, new Rng(1));
        var x = TestData.UniformTensor(rng, 3, 5, 2);
        Assert.Equal(x.Span.ToArray(), dropout.Forward(x, true).Span.ToArray());
        var dy = TestData.UniformTensor(rng, 3, 5, 2);
        Assert.Equal(dy.Span.ToArray(), dropout.Backward(dy)!.Span.ToArray());
    }

    [Fact]
    public void Evaluation_IsTheIdentity()
    {
        var rng = new Rng(62);
        var dropout = new Dropout("drop", 0.5f, new Rng(1));
        var x = TestData.UniformTensor(rng, 4, 9);
        Assert.Equal(x.Span.ToArray(), dropout.Forward(x, false).Span.ToArray());
        var dy = TestData.UniformTensor(rng, 4, 9);
        Assert.Equal(dy.Span.ToArray(), dropout.Backward(dy)!.Span.ToArray());
    }

    [Theory]
    [InlineData(0.3f, new[] { 3, 2, 5, 3 })]
    [InlineData(0.5f, new[] { 1, 37 })]
    public void Training_MasksAndScalesAndBackwardUsesTheSameMask(float p, int[] shape)
    {
        var rng = new Rng(63);
        var dropout = new Dropout("drop", p, new Rng(7));
        var x = GradientCheck.AwayFromZero(rng, 0.05, shape);
        var y = dropout.Forward(x, true);
        float scale = 1f / (1f - p);
        var mask = new float[x.Length];
        int dropped = 0;
        for (int i = 0; i < x.Length; i++)
        {
            if (y.Span[i] == 0f) { dropped++; continue; }
            mask[i] = scale;
            Assert.Equal(x.Span[i] * scale, y.Span[i]);
        }
        Assert.InRange(dropped, 1, x.Length - 1);

        var r = TestData.UniformTensor(rng, shape);
        var dx = dropout.Backward(r)!;
        Assert.Equal(shape, dx.ShapeArray());
        for (int i = 0; i < x.Length; i++) Assert.Equal(r.Span[i] * mask[i], dx.Span[i]);
        // The same through finite differences of L = Σ r·(x·mask) in float64.
        var xd = ReferenceOps.ToDouble(x.Span);
        var rd = ReferenceOps.ToDouble(r.Span);
        var numeric = GradientCheck.Numeric(xd, () =>
        {
            double sum = 0;
            for (int i = 0; i < xd.Length; i++) sum += rd[i] * xd[i] * mask[i];
            return sum;
        });
        GradientCheck.AssertMatches(numeric, dx.Span, "dx");
    }

    [Fact]
    public void Training_KeepsTheExpectationAndDropsAboutAFractionP()
    {
        const float p = 0.3f;
        const int count = 200_000;
        var dropout = new Dropout("drop", p, new Rng(64));
        var x = new Tensor(count, 1);
        x.Span.Fill(1f);
        var y = dropout.Forward(x, true).Span;
        double sum = 0;
        int dropped = 0;
        foreach (float v in y) { sum += v; if (v == 0) dropped++; }
        // y is 0 or 1/(1-p): mean 1, std sqrt(p/(1-p)) ≈ 0.65, so 5 standard errors ≈ 0.0073.
        Assert.InRange(sum / count, 1 - 0.0073, 1 + 0.0073);
        // The dropped fraction has standard error sqrt(p(1-p)/count) ≈ 0.001.
        Assert.InRange(dropped / (double)count, p - 0.005, p + 0.005);
    }

    [Fact]
    public void MaskIsSeededAndChangesFromCallToCall()
    {
        var x = new Tensor(1, 64);
        x.Span.Fill(1f);
        var a = new Dropout("drop", 0.5f, new Rng(5));
        var b = new Dropout("drop", 0.5f, new Rng(5));
        var first = a.Forward(x, true).Span.ToArray();
        Assert.Equal(first, b.Forward(x, true).Span.ToArray());
        Assert.NotEqual(first, a.Forward(x, true).Span.ToArray());
    }

    [Fact]
    public void WithoutInputGradient_ReturnsNull_AndRejectsABadProbability()
    {
        var dropout = new Dropout("drop", 0.2f, new Rng(1)) { ComputeInputGradient = false };
        dropout.Forward(new Tensor(2, 3), true);
        Assert.Null(dropout.Backward(new Tensor(2, 3)));
        Assert.Throws<ArgumentException>(() => new Dropout("drop", 1f, new Rng(1)));
        Assert.Throws<ArgumentException>(() => new Dropout("drop", -0.1f, new Rng(1)));
        Assert.Throws<ArgumentException>(() => new Dropout("drop", float.NaN, new Rng(1)));
    }
}
