using MeProp.Losses;
using MeProp.Tensors;
using MeProp.Tests.Reference;

namespace MeProp.Tests.Losses;

/// <summary>
/// Mean softmax cross-entropy against the float64 reference: the loss value, and dlogits against
/// central differences of the mean loss (so a gradient summed instead of averaged fails by a factor N).
/// </summary>
public class SoftmaxCrossEntropyTests
{
    [Theory]
    [InlineData(1, 2)]
    [InlineData(3, 10)]
    [InlineData(5, 7)]
    [InlineData(3, 37)]
    public void LossAndGradient_MatchReferenceAndFiniteDifferences(int n, int classes)
    {
        var rng = new Rng((ulong)(n * 100 + classes));
        var logits = new Tensor(n, classes);
        for (int i = 0; i < logits.Length; i++) logits.Span[i] = rng.NextUniform(-4f, 4f);
        var labels = new int[n];
        for (int i = 0; i < n; i++) labels[i] = rng.NextInt(classes);

        var loss = new SoftmaxCrossEntropy();
        double value = loss.Forward(logits, labels);
        var ld = ReferenceOps.ToDouble(logits.Span);
        double expected = ReferenceOps.SoftmaxCrossEntropy(ld, n, classes, labels);
        // The loss sums in float64, but logits - max is formed in float32 (|logit| <= 4: rounding <= 5e-7 each).
        Assert.Equal(expected, value, 1e-6);
        Assert.Equal([n, classes], loss.Gradient.ShapeArray());
        var numeric = GradientCheck.Numeric(ld, () => ReferenceOps.SoftmaxCrossEntropy(ld, n, classes, labels));
        // Gradient entries are (softmax - onehot)/N, in [-1, 1]: float32 rounding ~1e-7.
        GradientCheck.AssertMatches(numeric, loss.Gradient.Span, "dlogits", 1e-6, 1e-5);
    }

    [Fact]
    public void LargeLogits_DoNotOverflow()
    {
        var logits = new Tensor([1000f, 0f, -1000f, 500f, 500f, 499f], 2, 3);
        var loss = new SoftmaxCrossEntropy();
        double value = loss.Forward(logits, [0, 2]);
        // Row 0: log(1 + e^-1000 + e^-2000) ≈ 0; row 1: log(2 + e^-1) + 1.
        double expected = (0 + Math.Log(2 + Math.Exp(-1)) + 1) / 2;
        Assert.Equal(expected, value, 1e-6);
        Assert.All(loss.Gradient.Span.ToArray(), v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void RejectsALabelOutsideTheClasses()
    {
        var loss = new SoftmaxCrossEntropy();
        Assert.Throws<ArgumentException>(() => loss.Forward(new Tensor(2, 3), [0, 3]));
        Assert.Throws<ArgumentException>(() => loss.Forward(new Tensor(2, 3), [0, -1]));
        Assert.Throws<ArgumentException>(() => loss.Forward(new Tensor(2, 3), [0]));
    }

    [Fact]
    public void CountCorrect_UsesTheFirstMaximum()
    {
        var logits = new Tensor([1f, 3f, 3f, 5f, 0f, 0f, 2f, 2f, 2f], 3, 3);
        Assert.Equal(2, SoftmaxCrossEntropy.CountCorrect(logits, [1, 0, 1]));
    }
}
