using MeProp.Losses;
using MeProp.Tensors;

namespace MeProp.Tests.Golden;

/// <summary>
/// Softmax cross-entropy (mean over the batch) against F.cross_entropy in float64.
/// Tolerance: loss 1e-5 + 1e-4·|torch|; dlogits 1e-6 + 1e-4·|torch| (entries are at most 1/N).
/// </summary>
public class LossParityTests
{
    [Fact]
    public void SoftmaxCrossEntropy()
    {
        var f = GoldenFixture.Load("softmax_cross_entropy.json");
        var labels = Array.ConvertAll(f.DataDouble("labels"), v => (int)v);
        var loss = new SoftmaxCrossEntropy();
        double value = loss.Forward(new Tensor(f.Data("logits"), f.Shape("logits")), labels);
        double expected = f.DataDouble("loss")[0];
        Assert.True(Math.Abs(value - expected) <= 1e-5 + 1e-4 * Math.Abs(expected), $"loss {value}, torch {expected}");
        Assert.Equal(f.Shape("dlogits"), loss.Gradient.ShapeArray());
        TestData.AssertClose(f.Data("dlogits"), loss.Gradient.Span, 1e-6, 1e-4, "dlogits");
    }
}
