using MeProp.Layers;
using MeProp.Models;
using MeProp.Tensors;

namespace MeProp.Tests.Models;

/// <summary>The summary counts what the model runs: the backward the layers do, on the input the model's Forward takes.</summary>
public class ModelSummaryTests
{
    /// <summary>Batch norm has parameters, so it is the first layer that skips dL/dx and conv1 computes one.</summary>
    private const string BatchNormFirst = """
        {"input": [2, 6, 6], "classes": 10, "layers": [
          {"type": "batchnorm"}, {"type": "conv2d", "out_channels": 3, "kernel_size": 3}, {"type": "relu"},
          {"type": "flatten"}, {"type": "linear", "out_features": 10}]}
        """;

    /// <summary>A block first: the block passes "no dL/dx" to the first layer of its body (a batch norm) and of its shortcut (a conv).</summary>
    private const string ResidualFirst = """
        {"input": [2, 6, 6], "classes": 10, "layers": [
          {"type": "residual",
            "layers": [{"type": "batchnorm"}, {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                       {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}],
            "shortcut": [{"type": "conv2d", "out_channels": 4, "kernel_size": 1}]},
          {"type": "globalavgpool"}, {"type": "linear", "out_features": 10}]}
        """;

    private const string Flat = """
        {"input": [784], "classes": 10, "layers": [
          {"type": "linear", "out_features": 32}, {"type": "relu"}, {"type": "linear", "out_features": 10}]}
        """;

    private static Sequential Build(string json, ComputeContext compute) => NetworkFactory.Build(NetworkSpec.Parse(json, "net.json"), compute, seed: 1);

    [Fact]
    public void AConvAfterTheFirstBatchNormCountsItsInputGradient()
    {
        using var compute = new ComputeContext(1);
        var summary = new ModelSummary(Build(BatchNormFirst, compute), [2, 6, 6]);
        var conv1 = summary.Rows.Single(r => r.Name == "conv1");
        Assert.Equal(3L * 4 * 4 * 2 * 3 * 3, conv1.ForwardMacs);
        Assert.Equal(2 * conv1.ForwardMacs, conv1.BackwardMacs);
    }

    [Theory]
    [InlineData(BatchNormFirst)]
    [InlineData(ResidualFirst)]
    public void BackwardMultiplyAddsAreThoseTheLayersCountInTheirDenseBackward(string json)
    {
        using var compute = new ComputeContext(1);
        var model = Build(json, compute);
        var summary = new ModelSummary(model, [2, 6, 6]);
        var logits = model.Forward(TestData.UniformTensor(new Rng(2), 1, 2, 6, 6), training: true);
        model.Backward(TestData.UniformTensor(new Rng(3), logits.ShapeArray()));
        foreach (var layer in model.AllLayers.OfType<IMePropLayer>())
        {
            long summarised = summary.Rows.Single(r => r.Name == layer.Name).BackwardMacs;
            Assert.True(layer.Counters.DenseBackwardMacs == summarised,
                $"{layer.Name}: the backward counted {layer.Counters.DenseBackwardMacs} multiply-adds, the summary {summarised}");
        }
    }

    [Fact]
    public void ANetworkWithFlatInputIsSummarisedForTheImagesItsForwardTakes()
    {
        using var compute = new ComputeContext(1);
        var model = Build(Flat, compute);
        Assert.Equal([1, 10], model.Forward(new Tensor(1, 1, 28, 28), training: false).ShapeArray());
        var fromImages = new ModelSummary(model, [1, 28, 28]);
        var fromFeatures = new ModelSummary(model, [784]);
        Assert.Equal(fromFeatures.Rows.Select(r => (r.Name, r.ForwardMacs, r.BackwardMacs, string.Join(",", r.OutputShape))),
            fromImages.Rows.Select(r => (r.Name, r.ForwardMacs, r.BackwardMacs, string.Join(",", r.OutputShape))));
        Assert.Equal(784L * 32 + 32L * 10, fromImages.ForwardMacs);
        // Images of another size are refused as Forward refuses them.
        var error = Assert.Throws<ArgumentException>(() => new ModelSummary(model, [3, 32, 32]));
        Assert.Contains("the network's input is [784] per example", error.Message);
    }
}
