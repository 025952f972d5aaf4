using MeProp.Layers;
using MeProp.Models;
using MeProp.Tensors;
using static MeProp.Tests.Layers.LayerTestSupport;

namespace MeProp.Tests.Models;

/// <summary>
/// A model tells each linear layer whether the layers in front of it ignore dL/dx at its input's zeros
/// (ReLU, then max pooling, flatten or dropout); such a layer, after a forward from its input's
/// non-zeros, computes dx only there. The parameter gradients are those of the plain dense backward
/// within float rounding (dx at the non-zeros sums the same terms in another order).
/// </summary>
public class InputZerosGradientTests
{
    private static Linear LinearAt(Sequential model, string name) => (Linear)model.Layer(name);

    [Fact]
    public void TheModelMarksLinearLayersBehindReluAndPoolingOnly()
    {
        using var compute = new ComputeContext(1);
        var model = new NetworkBuilder(2, 8, 8)
            .Conv2d(4, 3, padding: NetworkBuilder.Same).ReLU().MaxPool2d(2).Flatten().Dropout(0.1).Linear(20, "behindRelu")
            .Sigmoid().Linear(20, "behindSigmoid")
            .ReLU().Linear(20, "behindRelu2")
            .BatchNorm().Linear(10, "behindBatchNorm")
            .Build(10, compute, seed: 1);
        Assert.True(LinearAt(model, "behindRelu").InputZerosNeedNoGradient);
        Assert.False(LinearAt(model, "behindSigmoid").InputZerosNeedNoGradient);
        Assert.True(LinearAt(model, "behindRelu2").InputZerosNeedNoGradient);
        Assert.False(LinearAt(model, "behindBatchNorm").InputZerosNeedNoGradient);

        // A first layer has no layer in front (the images' zeros carry their gradient); pooling or flatten
        // straight after the images passes nothing on.
        var mlp = new NetworkBuilder(1, 4, 4).MaxPool2d(2).Flatten().Linear(8, "first").ReLU().Linear(3, "second").Build(3, compute, seed: 1);
        Assert.False(LinearAt(mlp, "first").InputZerosNeedNoGradient);
        Assert.True(LinearAt(mlp, "second").InputZerosNeedNoGradient);
    }

    /// <summary>
    /// One step of conv -> ReLU -> pool -> flatten -> fc (enough outputs for the sparse-input forward) ->
    /// ReLU -> out, layer by layer as the model runs it, keeping fc's input and the dx it returns.
    /// </summary>
    private static (float[][] Gradients, float[] FcInput, float[] FcDx) RunStep(ExactSparsity setting, int threads, float convBias)
    {
        using var compute = new ComputeContext(threads);
        var model = new NetworkBuilder(3, 8, 8)
            .Conv2d(8, 3, padding: NetworkBuilder.Same, name: "conv").ReLU().MaxPool2d(2).Flatten()
            .Linear(ExactSparsityThresholds.LinearInputMinOutputs + 6, "fc").ReLU().Linear(5, "out")
            .Build(5, compute, seed: 3);
        model.SetExactSparsity(setting);
        // A negative bias leaves few of conv's outputs positive: fc's input mostly zero, as on a trained network.
        ((Conv2d)model.Layer("conv")).Bias.Value.Span.Fill(convBias);
        var rng = new Rng(5);
        Tensor x = TestData.UniformTensor(rng, 6, 3, 8, 8);
        int fc = model.Layers.ToList().FindIndex(l => l.Name == "fc");
        float[] fcInput = [];
        for (int i = 0; i < model.Layers.Count; i++)
        {
            if (i == fc) fcInput = Copy(x);
            x = model.Layers[i].Forward(x, training: true);
        }
        Tensor? dy = TestData.UniformTensor(rng, x.ShapeArray());
        float[] fcDx = [];
        for (int i = model.Layers.Count - 1; i >= 0 && dy is not null; i--)
        {
            dy = model.Layers[i].Backward(dy);
            if (i == fc) fcDx = Copy(dy!);
        }
        return (model.Parameters.Select(Gradient).ToArray(), fcInput, fcDx);
    }

    [Theory]
    [InlineData(-0.6f, true)] // fc's input ~10% non-zero: dx at its non-zeros only
    [InlineData(0.5f, false)] // mostly non-zero: the dense product
    public void ParameterGradients_MatchTheDenseBackward(float convBias, bool masked)
    {
        var dense = RunStep(ExactSparsity.Off, 1, convBias);
        var auto = RunStep(ExactSparsity.Auto, 2, convBias);
        double density = dense.FcInput.Count(v => v != 0) / (double)dense.FcInput.Length;
        Assert.True(masked == density <= ExactSparsityThresholds.LinearInput, $"fc's input density {density}");
        for (int i = 0; i < dense.FcDx.Length; i++)
        {
            if (dense.FcInput[i] != 0f) Assert.True(Math.Abs(auto.FcDx[i] - dense.FcDx[i]) <= 1e-5 + 1e-4 * Math.Abs(dense.FcDx[i]), $"dx[{i}]");
            else if (masked) Assert.True(auto.FcDx[i] == 0f, $"dx[{i}] = {auto.FcDx[i]} at a zero input");
            else Assert.Equal(dense.FcDx[i], auto.FcDx[i]);
        }
        // The dense dx is not zero where the input is, so the mask is seen.
        if (masked) Assert.Contains(dense.FcDx.Where((v, i) => dense.FcInput[i] == 0f), v => v != 0f);
        for (int i = 0; i < dense.Gradients.Length; i++)
            TestData.AssertClose(dense.Gradients[i], auto.Gradients[i], 1e-5, 1e-4, $"parameter {i}");
    }
}
