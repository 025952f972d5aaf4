using MeProp.Layers;
using MeProp.Models;
using MeProp.Tensors;

namespace MeProp.Tests.Models;

/// <summary>The papers' networks: shapes, parameter counts, names, and seeded initialisation.</summary>
public class ModelBuilderTests
{
    private static Sequential Build(ComputeContext compute, ModelOptions options, ulong seed = 1) =>
        ModelBuilder.Build(options, 1, 28, 28, 10, compute, seed);

    [Fact]
    public void PaperCnn_MapsMnistBatchesToTenLogits()
    {
        using var compute = new ComputeContext(2);
        var model = Build(compute, new ModelOptions { Model = "paper-cnn" });
        var logits = model.Forward(TestData.UniformTensor(new Rng(3), 2, 1, 28, 28), training: false);
        Assert.Equal([2, 10], logits.ShapeArray());
        Assert.All(logits.Span.ToArray(), v => Assert.True(float.IsFinite(v)));
        // conv1 32·1·5·5 + 32, conv2 64·32·5·5 + 64, fc1 (64·7·7)·1024 + 1024, fc2 1024·10 + 10.
        Assert.Equal(3_274_634, model.ParameterCount);
        var names = model.Layers.Select(l => l.Name).ToArray();
        Assert.Subset(names.ToHashSet(), new HashSet<string> { "conv1", "conv2", "fc1", "fc2" });
        Assert.Equal(
            ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"],
            model.Parameters.Select(p => p.Name));
        Assert.Equal([32, 1, 5, 5], model.Parameters[0].Value.ShapeArray());
        Assert.Equal([64, 32, 5, 5], model.Parameters[2].Value.ShapeArray());
        Assert.Equal([1024, 3136], model.Parameters[4].Value.ShapeArray());
        Assert.Equal([10, 1024], model.Parameters[6].Value.ShapeArray());
        Assert.False(model.Layers[0].ComputeInputGradient);
        Assert.True(model.Layer("fc1").ComputeInputGradient);
    }

    [Fact]
    public void PaperCnn_BackwardFillsEveryParameterGradient()
    {
        using var compute = new ComputeContext(2);
        var model = Build(compute, new ModelOptions { Activation = ActivationKind.Tanh });
        var logits = model.Forward(TestData.UniformTensor(new Rng(4), 2, 1, 28, 28), training: true);
        model.Backward(TestData.UniformTensor(new Rng(5), logits.ShapeArray()));
        foreach (var p in model.Parameters)
            Assert.True(p.Gradient.Span.IndexOfAnyExcept(0f) >= 0, $"{p.Name} got no gradient");
    }

    [Fact]
    public void Mlp_HasTheOriginalMePropShape()
    {
        using var compute = new ComputeContext(1);
        var model = Build(compute, new ModelOptions { Model = "mlp" });
        Assert.Equal(["flatten", "fc1", "act1", "fc2", "act2", "fc3"], model.Layers.Select(l => l.Name));
        Assert.Equal([500, 784], model.Layer("fc1").Parameters[0].Value.ShapeArray());
        Assert.Equal([500, 500], model.Layer("fc2").Parameters[0].Value.ShapeArray());
        Assert.Equal([10, 500], model.Layer("fc3").Parameters[0].Value.ShapeArray());
        Assert.Equal(784 * 500 + 500 + 500 * 500 + 500 + 500 * 10 + 10, model.ParameterCount);
        var logits = model.Forward(TestData.UniformTensor(new Rng(6), 3, 1, 28, 28), training: false);
        Assert.Equal([3, 10], logits.ShapeArray());

        var small = Build(compute, new ModelOptions { Model = "mlp", HiddenSize = 7, HiddenLayers = 1 });
        Assert.Equal(["flatten", "fc1", "act1", "fc2"], small.Layers.Select(l => l.Name));
        Assert.Equal(784 * 7 + 7 + 7 * 10 + 10, small.ParameterCount);
        Assert.Equal([2, 10], small.Forward(new Tensor(2, 1, 28, 28), false).ShapeArray());
    }

    [Theory]
    [InlineData("paper-cnn")]
    [InlineData("mlp")]
    public void SameSeedGivesIdenticalWeights_DifferentSeedDifferent(string name)
    {
        using var compute = new ComputeContext(1);
        var options = new ModelOptions { Model = name };
        var a = Build(compute, options, seed: 42);
        var b = Build(compute, options, seed: 42);
        var c = Build(compute, options, seed: 43);
        for (int i = 0; i < a.Parameters.Count; i++)
        {
            var wa = a.Parameters[i].Value.Span.ToArray();
            Assert.Equal(wa, b.Parameters[i].Value.Span.ToArray());
            Assert.NotEqual(wa, c.Parameters[i].Value.Span.ToArray());
        }
    }

    [Fact]
    public void PaperCnn_WeightsFollowPyTorchDefaultBounds()
    {
        using var compute = new ComputeContext(1);
        var model = Build(compute, new ModelOptions());
        foreach (var (name, fanIn) in new[] { ("conv1", 25), ("conv2", 800), ("fc1", 3136), ("fc2", 1024) })
        {
            var w = model.Layer(name).Parameters[0].Value.Span.ToArray();
            float bound = 1f / MathF.Sqrt(fanIn);
            Assert.All(w, v => Assert.InRange(v, -bound, bound));
            Assert.True(w.Max() > 0.9f * bound && w.Min() < -0.9f * bound, $"{name}: span [{w.Min()}, {w.Max()}], bound {bound}");
        }
    }

    [Fact]
    public void RejectsAnUnknownModelAndTooSmallImages()
    {
        using var compute = new ComputeContext(1);
        var e = Assert.Throws<ArgumentException>(() => Build(compute, new ModelOptions { Model = "resnet" }));
        Assert.Contains("paper-cnn", e.Message);
        var small = Assert.Throws<ModelSpecException>(() => ModelBuilder.Build(new ModelOptions(), 1, 3, 3, 10, compute, 1));
        Assert.Contains("pool2", small.Message); // 3x3 -> pool1 -> 1x1, too small for the second pooling
    }

    [Theory]
    [InlineData("""{"input": null, "classes": 10, "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]}""", "net.json: input is missing; it must be [C, H, W] or [features]")]
    [InlineData("""{"input": [28, 28], "classes": 10, "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]}""", "net.json: input must be [C, H, W] or [features] with positive sizes, got [28, 28]")]
    [InlineData("""{"input": [1, 28, 28], "classes": 10, "layers": null}""", "net.json: the network has no layers")]
    public void ANetworkFileWithoutInputOrLayersFailsWithOneLine(string json, string expected)
    {
        var options = new ModelOptions { Model = "net.json", Network = NetworkSpec.Parse(json, "net.json") };
        // With input normalisation, a normalize layer is put in front of the file's layers.
        foreach (var normalization in new[] { null, new InputNormalization([0.5f], [0.25f]) })
        {
            var error = Assert.Throws<ModelSpecException>(() => ModelBuilder.Spec(options with { Normalization = normalization }, 1, 28, 28, 10));
            Assert.Equal(expected, error.Message);
        }
    }

    [Fact]
    public void InputNormalisationOfANetworkWithFlatInputIsRefusedAsSuch()
    {
        var flat = NetworkSpec.Parse("""{"input": [784], "classes": 10, "layers": [{"type": "linear", "out_features": 10}]}""", "flat.json");
        var options = new ModelOptions { Model = "flat.json", Network = flat, Normalization = new InputNormalization([0.13f], [0.31f]) };
        var error = Assert.Throws<ModelSpecException>(() => ModelBuilder.Spec(options, 1, 28, 28, 10));
        Assert.Equal("flat.json: --normalize (or --mean and --std) needs image input [C, H, W]; the network's input is [784] features", error.Message);
    }
}
