using MeProp.Layers;
using MeProp.Models;
using MeProp.Sparsity;

namespace MeProp.Tests.Models;

/// <summary>Networks described as data: parsing, generated names, shape inference, one-line errors, the fluent builder and the summary.</summary>
public class NetworkSpecTests : IDisposable
{
    /// <summary>The built models' context: it must outlive them (a disposed pool refuses to run).</summary>
    private readonly ComputeContext _compute = new(1);

    public void Dispose() => _compute.Dispose();

    private const string Small = """
        {"input": [1, 12, 12], "classes": 10, "layers": [
          {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": "same"}, {"type": "batchnorm"}, {"type": "relu"},
          {"type": "residual", "layers": [
              {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
              {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}],
            "shortcut": [{"type": "conv2d", "out_channels": 8, "kernel_size": 1, "stride": 2}]},
          {"type": "avgpool", "kernel_size": 2}, {"type": "maxpool", "kernel_size": 1},
          {"type": "globalavgpool"}, {"type": "dropout", "p": 0.25}, {"type": "linear", "name": "head", "out_features": 10}]}
        """;

    private Sequential Build(string json, ulong seed = 1) => NetworkFactory.Build(NetworkSpec.Parse(json, "net.json"), _compute, seed);

    [Fact]
    public void NamesAreGeneratedPerKindAndInsideBlocks()
    {
        var model = Build(Small);
        Assert.Equal(["conv1", "bn1", "act1", "res1", "res1.conv1", "res1.bn1", "res1.act1", "res1.conv2", "res1.shortcut.conv1", "pool1", "pool2", "gap1", "dropout1", "head"],
            model.AllLayers.Select(l => l.Name));
        Assert.Equal(["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias"], model.Parameters.Take(4).Select(p => p.Name));
        Assert.Contains(model.Parameters, p => p.Name == "res1.shortcut.conv1.weight");
        var head = Assert.IsType<Linear>(model.Layer("head"));
        Assert.Equal(8, head.InFeatures);
    }

    [Fact]
    public void TheFluentBuilderWritesTheSameNetworkAsTheFile()
    {
        var spec = new NetworkBuilder(1, 12, 12)
            .Conv2d(4, 3, padding: NetworkBuilder.Same).BatchNorm().ReLU()
            .Residual(body => body.Conv2d(8, 3, stride: 2, padding: 1).BatchNorm().ReLU().Conv2d(8, 3, padding: 1),
                      shortcut => shortcut.Conv2d(8, 1, stride: 2))
            .AvgPool2d(2).MaxPool2d(1).GlobalAvgPool2d().Dropout(0.25).Linear(10, name: "head")
            .Spec(classes: 10);
        using var compute = new ComputeContext(1);
        var fromBuilder = NetworkFactory.Build(spec, compute, seed: 4);
        var fromFile = Build(Small, seed: 4);
        Assert.Equal(fromFile.Parameters.Select(p => p.Name), fromBuilder.Parameters.Select(p => p.Name));
        foreach (var (a, b) in fromFile.Parameters.Zip(fromBuilder.Parameters))
            Assert.True(a.Value.Span.SequenceEqual(b.Value.Span), $"{a.Name} differs");
        // And the builder's spec survives its own JSON.
        var again = NetworkFactory.Build(NetworkSpec.Parse(spec.ToJson(), "round trip"), compute, seed: 4);
        Assert.True(again.Parameters.Zip(fromBuilder.Parameters).All(p => p.First.Value.Span.SequenceEqual(p.Second.Value.Span)));
    }

    [Fact]
    public void ABuiltNetworkRunsForwardAndBackwardWithTheInferredShapes()
    {
        var model = Build(Small);
        var x = new MeProp.Tensors.Tensor(3, 1, 12, 12);
        var rng = new MeProp.Tensors.Rng(3);
        for (int i = 0; i < x.Length; i++) x.Span[i] = rng.NextUniform(-1, 1);
        var y = model.Forward(x, training: true);
        Assert.Equal([3, 10], y.ShapeArray());
        var dy = new MeProp.Tensors.Tensor(3, 10);
        dy.Span.Fill(0.1f);
        model.Backward(dy);
        Assert.All(model.Parameters.Where(p => p.Name.EndsWith(".weight")), p => Assert.Contains(p.Gradient.Span.ToArray(), g => g != 0));
    }

    /// <summary>Every field the format has, each away from its default (batch norm's epsilon and momentum are not in the format).</summary>
    private const string EveryOption = """
        {"input": [3, 12, 12], "classes": 10, "layers": [
          {"type": "normalize", "name": "norm", "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.6, 0.7]},
          {"type": "conv2d", "name": "stem", "out_channels": 4, "kernel_size": 3, "padding": "same",
           "meprop": {"ratio": 0.3, "decay": 0.6, "selection": "per-example-channel", "decay_shape": "channel-position"}},
          {"type": "batchnorm", "name": "stem_bn"}, {"type": "tanh"},
          {"type": "maxpool", "kernel_size": 3, "stride": 1},
          {"type": "residual", "name": "block",
           "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1,
                       "meprop": {"ratio": 0.25, "selection": "per-channel", "mass_fraction": 0.9, "zero_mean": true}},
                      {"type": "batchnorm"}, {"type": "relu"}, {"type": "conv2d", "name": "last", "out_channels": 8, "kernel_size": 3, "padding": 1}],
           "shortcut": [{"type": "conv2d", "out_channels": 8, "kernel_size": 1, "stride": 2, "meprop": {"ratio": 0.5, "selection": "channel"}},
                        {"type": "batchnorm"}]},
          {"type": "sigmoid"}, {"type": "avgpool", "kernel_size": 2, "stride": 1}, {"type": "globalavgpool"}, {"type": "flatten"},
          {"type": "dropout", "p": 0.3},
          {"type": "linear", "name": "hidden", "out_features": 16, "meprop": {"ratio": 0.2, "decay": 0.5, "selection": "unified"}},
          {"type": "relu"}, {"type": "linear", "name": "head", "out_features": 10}]}
        """;

    /// <summary>What a built layer was configured with, as text, so two builds can be compared layer by layer.</summary>
    private static string Settings(ILayer layer) => layer.Name + ": " + layer switch
    {
        Conv2d conv => $"conv2d {conv.InChannels}->{conv.OutChannels} kernel {conv.KernelSize} stride {conv.Stride} padding {conv.Padding}, {MePropSettings(conv)}",
        Linear linear => $"linear {linear.InFeatures}->{linear.OutFeatures}, {MePropSettings(linear)}",
        BatchNorm bn => $"batchnorm {bn.Features} epsilon {bn.Epsilon} momentum {bn.Momentum} values per example {bn.ValuesPerExample}",
        Activation activation => $"{activation.Kind}",
        MaxPool2d pool => $"maxpool kernel {pool.KernelSize} stride {pool.Stride}",
        AvgPool2d pool => $"avgpool kernel {pool.KernelSize} stride {pool.Stride}",
        GlobalAvgPool2d => "globalavgpool",
        Flatten => "flatten",
        Dropout dropout => $"dropout p {dropout.Probability}",
        Normalize normalize => $"normalize mean [{string.Join(", ", normalize.Mean.ToArray())}] std [{string.Join(", ", normalize.Std.ToArray())}]",
        Residual block => $"residual of {block.Body.Count} layers, shortcut of {block.Shortcut.Count}",
        _ => throw new ArgumentException($"{layer.Name}: no settings written for {layer.GetType().Name}"),
    };

    private static string MePropSettings(IMePropLayer layer) => layer.Sparsifier is { } sparsifier ? sparsifier.Options.ToString() : "dense";

    [Fact]
    public void EveryLayerSettingSurvivesTheJsonFormat()
    {
        using var compute = new ComputeContext(1);
        var spec = NetworkSpec.Parse(EveryOption, "net.json");
        var original = NetworkFactory.Build(spec, compute, seed: 1);
        var rebuilt = NetworkFactory.Build(NetworkSpec.Parse(spec.ToJson(), "round trip"), compute, seed: 1);
        Assert.Equal(original.AllLayers.Select(l => l.Name), rebuilt.AllLayers.Select(l => l.Name));
        foreach (var (before, after) in original.AllLayers.Zip(rebuilt.AllLayers)) Assert.Equal(Settings(before), Settings(after));
        // The settings compared are the file's, not defaults that both builds would share.
        Assert.Equal(["norm", "stem", "stem_bn", "act1", "pool1", "block", "block.conv1", "block.bn1", "block.act1", "block.last",
                      "block.shortcut.conv1", "block.shortcut.bn1", "act2", "pool2", "gap1", "flatten", "dropout1", "hidden", "act3", "head"],
            rebuilt.AllLayers.Select(l => l.Name));
        Assert.Equal([0.1f, 0.2f, 0.3f], ((Normalize)rebuilt.Layer("norm")).Mean.ToArray());
        Assert.Equal([0.5f, 0.6f, 0.7f], ((Normalize)rebuilt.Layer("norm")).Std.ToArray());
        Assert.Equal(1, ((Conv2d)rebuilt.Layer("stem")).Padding);
        var strided = (Conv2d)rebuilt.Layer("block.conv1");
        Assert.Equal((2, 1), (strided.Stride, strided.Padding));
        Assert.Equal(new MePropOptions { Ratio = 0.25, Selection = SelectionPolicy.PerChannel, MassFraction = 0.9, ZeroMean = true }, strided.Sparsifier!.Options);
        Assert.Equal(new MePropOptions { Ratio = 0.3, Decay = 0.6, Selection = SelectionPolicy.PerExampleChannel, DecayShape = DecayShape.ChannelPosition },
            ((Conv2d)rebuilt.Layer("stem")).Sparsifier!.Options);
        Assert.Equal(SelectionPolicy.Channel, ((Conv2d)rebuilt.Layer("block.shortcut.conv1")).Sparsifier!.Options.Selection);
        Assert.Equal(new MePropOptions { Ratio = 0.2, Decay = 0.5, Selection = SelectionPolicy.Unified }, ((Linear)rebuilt.Layer("hidden")).Sparsifier!.Options);
        Assert.Null(((Conv2d)rebuilt.Layer("block.last")).Sparsifier);
        Assert.Equal((3, 1), (((MaxPool2d)rebuilt.Layer("pool1")).KernelSize, ((MaxPool2d)rebuilt.Layer("pool1")).Stride));
        Assert.Equal((2, 1), (((AvgPool2d)rebuilt.Layer("pool2")).KernelSize, ((AvgPool2d)rebuilt.Layer("pool2")).Stride));
        Assert.Equal(0.3f, ((Dropout)rebuilt.Layer("dropout1")).Probability);
        Assert.Equal([ActivationKind.Tanh, ActivationKind.Relu, ActivationKind.Sigmoid, ActivationKind.Relu],
            rebuilt.AllLayers.OfType<Activation>().Select(a => a.Kind));
        Assert.False(((Residual)rebuilt.Layer("block")).IdentityShortcut);
    }

    [Theory]
    [InlineData("""{"type": "pooling", "kernel_size": 2}""", "unknown layer type 'pooling'")]
    [InlineData("""{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "out_features": 5}""", "conv1: 'out_features' does not apply to conv2d")]
    [InlineData("""{"type": "conv2d", "out_channels": 4}""", "conv1: 'kernel_size' is required")]
    [InlineData("""{"type": "conv2d", "out_channels": 4, "kernel_size": 4, "padding": "same"}""", "conv1: padding \"same\" needs stride 1 and an odd kernel_size")]
    [InlineData("""{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": "valid"}""", "conv1: padding must be")]
    [InlineData("""{"type": "linear", "out_features": 10}""", "fc1: linear needs features [F] per example, got [1, 6, 6]; add a flatten")]
    [InlineData("""{"type": "maxpool", "kernel_size": 7}""", "pool1")]
    [InlineData("""{"type": "residual", "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 1}]}""", "res1: the block's layers give [2, 6, 6] but its identity shortcut gives [1, 6, 6]")]
    [InlineData("""{"type": "flatten"}, {"type": "linear", "out_features": 7}""", "the network ends in [7] per example, but classes is 10")]
    [InlineData("""{"type": "dropout", "p": 1.5}""", "dropout1: p must be in [0, 1)")]
    [InlineData("""{"type": "flatten"}, null""", "an entry is null")]
    [InlineData("""{"type": "normalize", "mean": [0.5, 0.5], "std": [0.2, 0.2]}""", "normalize: normalize takes images [C, H, W] with a mean and std per channel; got [1, 6, 6] and 2 mean(s)")]
    [InlineData("""{"type": "flatten"}, {"type": "normalize", "mean": [0.5], "std": [0.2]}""", "normalize: normalize takes images [C, H, W]")]
    [InlineData("""{"type": "residual", "layers": [null]}""", "res1.layers: an entry is null")]
    [InlineData("""{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 0}""", "conv1: 'stride' must be >= 1, got 0")]
    [InlineData("""{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": -2}""", "conv1: 'stride' must be >= 1, got -2")]
    [InlineData("""{"type": "relu", "name": "same"}, {"type": "flatten", "name": "same"}""", "same: another layer has this name")]
    [InlineData("""{"type": "conv2d", "name": "conv2", "out_channels": 2, "kernel_size": 1}, {"type": "conv2d", "out_channels": 2, "kernel_size": 1}""", "conv2: another layer has this name")]
    [InlineData("""{"type": "relu", "name": "res1.act1"}, {"type": "residual", "layers": [{"type": "relu"}]}""", "res1.act1: another layer has this name")]
    public void BadLayersFailWithTheLayersName(string layers, string expected)
    {
        string json = $$"""{"input": [1, 6, 6], "classes": 10, "layers": [{{layers}}]}""";
        var error = Assert.Throws<ModelSpecException>(() => Build(json));
        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("""{"input": [1, 6, 6], "classes": 10, "layers": [{"type": "flatten", "kernel": 2}]}""", "$.layers[0].kernel")]
    [InlineData("""{"input": [1, 6, 6], "classes": 10}""", "layers")]
    [InlineData("""{"input": [1, 6, 6], "classes": "ten", "layers": []}""", "$.classes")]
    [InlineData("""not json""", "net.json: not a network description")]
    public void BadFilesNameTheFileAndThePlace(string json, string expected)
    {
        var error = Assert.Throws<ModelSpecException>(() => NetworkSpec.Parse(json, "net.json"));
        Assert.StartsWith("net.json: ", error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void TheSummaryCountsParametersAndMultiplyAdds()
    {
        using var compute = new ComputeContext(1);
        var paper = ModelBuilder.Build(new ModelOptions(), 1, 28, 28, 10, compute, seed: 1);
        var summary = new ModelSummary(paper, [1, 28, 28]);
        // conv1 5*5*32+32, conv2 5*5*32*64+64, fc1 3136*1024+1024, fc2 1024*10+10.
        Assert.Equal(832 + 51_264 + 3_212_288 + 10_250, summary.Parameters);
        var conv2 = summary.Rows.Single(r => r.Name == "conv2");
        Assert.Equal([64, 14, 14], conv2.OutputShape);
        Assert.Equal(64L * 14 * 14 * 32 * 25, conv2.ForwardMacs);
        Assert.Equal(2 * conv2.ForwardMacs, conv2.BackwardMacs);
        // The first conv computes no input gradient: its backward is dW alone.
        var conv1 = summary.Rows.Single(r => r.Name == "conv1");
        Assert.Equal(conv1.ForwardMacs, conv1.BackwardMacs);
        Assert.Equal(summary.Rows.Sum(r => r.ForwardMacs), summary.ForwardMacs);

        var blocks = new ModelSummary(Build(Small), [1, 12, 12]);
        var block = blocks.Rows.Single(r => r.Name == "res1");
        Assert.Equal(blocks.Rows.Where(r => r.Depth == 1).Sum(r => r.Parameters), block.Parameters);
        Assert.Equal(blocks.Rows.Where(r => r.Depth == 1).Sum(r => r.ForwardMacs), block.ForwardMacs);
        Assert.Equal([8, 6, 6], block.OutputShape);
        Assert.Contains("res1.shortcut.conv1", blocks.ToString());
    }
}
