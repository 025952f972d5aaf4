using MeProp.Layers;
using MeProp.Models;
using MeProp.Tensors;
using MeProp.Training;

namespace MeProp.Tests.Training;

public class PredictionTests
{
    [Fact]
    public void ProbabilitiesAreTheSoftmaxOfTheLogitsAndStayTheCallers()
    {
        using var compute = new ComputeContext(1);
        var model = new NetworkBuilder(1, 6, 6).Conv2d(3, 3).BatchNorm().ReLU().Flatten().Linear(4).Build(classes: 4, compute, seed: 2);
        var images = new Tensor(3, 1, 6, 6);
        var rng = new Rng(5);
        for (int i = 0; i < images.Length; i++) images.Span[i] = rng.NextUniform(0, 1);
        var logits = model.Forward(images, training: false).Span.ToArray();

        float[] first = Prediction.Predict(model, images);
        Assert.Equal(12, first.Length);
        for (int row = 0; row < 3; row++)
        {
            double[] exps = logits.Skip(4 * row).Take(4).Select(v => Math.Exp(v)).ToArray();
            for (int c = 0; c < 4; c++) Assert.Equal(exps[c] / exps.Sum(), first[4 * row + c], 1e-6); // float32 rounding
        }

        float[] copy = (float[])first.Clone();
        var other = new Tensor(3, 1, 6, 6);
        other.Span.Fill(0.9f);
        float[] second = Prediction.Predict(model, other);
        Assert.Equal(copy, first); // the first answer is not a buffer the second call reuses
        Assert.NotEqual(first, second);

        float[] one = Prediction.Predict(model, images.Span[..36], 1, 6, 6);
        for (int c = 0; c < 4; c++) Assert.Equal(first[c], one[c]);
        Assert.Throws<ArgumentException>(() => Prediction.Predict(model, images, new float[11]));
    }

    [Fact]
    public void LargeLogitsDoNotOverflow()
    {
        using var compute = new ComputeContext(1);
        var model = new NetworkBuilder(1, 1, 1).Flatten().Linear(2).Build(classes: 2, compute, seed: 1);
        model.Parameters[0].Value.Span.Fill(1000f);
        var image = new Tensor(1, 1, 1, 1);
        image.Span[0] = 1f;
        float[] p = Prediction.Predict(model, image);
        Assert.All(p, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(1f, p.Sum(), 5);
    }
}
