using MeProp.Layers;
using MeProp.Models;
using MeProp.Sparsity;
using MeProp.Tensors;

namespace MeProp.Tests.Models;

public class MePropSetupTests : IDisposable
{
    private readonly ComputeContext _compute = new(1);

    public void Dispose() => _compute.Dispose();

    /// <summary>conv1 -> act1 -> conv2 -> flatten -> fc1 -> act2 -> fc2 (the output layer), for 1x8x8 images.</summary>
    private Sequential Model()
    {
        var rng = new Rng(1);
        return new Sequential(
        [
            new Conv2d("conv1", 1, 4, 3, 1, 1, _compute, rng),
            new Activation("act1", ActivationKind.Relu),
            new Conv2d("conv2", 4, 4, 3, 2, 1, _compute, rng),
            new Flatten("flatten"),
            new Linear("fc1", 64, 16, _compute, rng),
            new Activation("act2", ActivationKind.Relu),
            new Linear("fc2", 16, 10, _compute, rng),
        ]);
    }

    private static GradientSparsifier? Of(Sequential model, string name) => ((IMePropLayer)model.Layer(name)).Sparsifier;

    private static SelectionPolicy? PolicyOf(Sequential model, string name) => Of(model, name)?.Options.Selection;

    [Fact]
    public void SetExactSparsity_ReachesEveryConvAndLinearLayer()
    {
        var model = Model();
        foreach (var setting in new[] { ExactSparsity.Auto, ExactSparsity.Always, ExactSparsity.Off })
        {
            model.SetExactSparsity(setting);
            foreach (string name in new[] { "conv1", "conv2", "fc1", "fc2" })
                Assert.Equal(setting, ((IMePropLayer)model.Layer(name)).ExactSparsity);
        }
    }

    [Fact]
    public void DefaultAttachesToConvolutionsOnly()
    {
        var model = Model();
        MePropSetup.Attach(model, 0.05, 0.9, DecayShape.ChannelPosition, selection: null, layerNames: null, seed: 1);
        foreach (string name in new[] { "conv1", "conv2" })
        {
            var s = Of(model, name);
            Assert.NotNull(s);
            Assert.Equal(new MePropOptions { Ratio = 0.05, Decay = 0.9, DecayShape = DecayShape.ChannelPosition, Selection = SelectionPolicy.PerChannel }, s.Options);
        }
        Assert.Null(Of(model, "fc1"));
        Assert.Null(Of(model, "fc2"));
    }

    [Fact]
    public void PolicyResolutionWithoutSelection()
    {
        var model = Model();
        MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, selection: null, layerNames: ["conv1", "fc1"], seed: 1);
        Assert.Equal(SelectionPolicy.PerChannel, PolicyOf(model, "conv1"));
        Assert.Equal(SelectionPolicy.PerExample, PolicyOf(model, "fc1"));
        Assert.Null(Of(model, "conv2"));
        Assert.Null(Of(model, "fc2"));
    }

    [Theory]
    [InlineData(SelectionPolicy.PerChannel, SelectionPolicy.PerChannel, SelectionPolicy.PerExample)]
    [InlineData(SelectionPolicy.PerExampleChannel, SelectionPolicy.PerExampleChannel, SelectionPolicy.PerExample)]
    [InlineData(SelectionPolicy.PerExample, SelectionPolicy.PerChannel, SelectionPolicy.PerExample)]
    [InlineData(SelectionPolicy.Unified, SelectionPolicy.PerChannel, SelectionPolicy.Unified)]
    [InlineData(SelectionPolicy.Random, SelectionPolicy.Random, SelectionPolicy.Random)]
    public void SelectionAppliesWhereItFitsAndDefaultsElsewhere(SelectionPolicy selection, SelectionPolicy conv, SelectionPolicy linear)
    {
        var model = Model();
        MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, selection, ["conv1", "conv2", "fc1"], seed: 1);
        Assert.Equal(conv, PolicyOf(model, "conv1"));
        Assert.Equal(conv, PolicyOf(model, "conv2"));
        Assert.Equal(linear, PolicyOf(model, "fc1"));
    }

    [Theory]
    [InlineData(SelectionPolicy.Unified)]
    [InlineData(SelectionPolicy.PerExample)]
    public void LinearSelectionWithOnlyConvolutionsRejected(SelectionPolicy selection)
    {
        var model = Model();
        var e = Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, selection, layerNames: null, seed: 1));
        Assert.Contains("selection " + MePropSetup.Cli(selection) + " applies to none", e.Message);
        Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, selection, ["conv2"], seed: 1));
        Assert.Null(Of(model, "conv1"));
        Assert.Null(Of(model, "conv2"));
    }

    [Fact]
    public void ConvSelectionWithOnlyLinearLayersRejected()
    {
        var model = Model();
        Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, SelectionPolicy.PerExampleChannel, ["fc1"], seed: 1));
        Assert.Null(Of(model, "fc1"));
    }

    [Fact]
    public void OutputLayerRejected()
    {
        var model = Model();
        var e = Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, null, ["conv1", "fc2"], seed: 1));
        Assert.Contains("fc2", e.Message);
        Assert.Contains("output", e.Message);
        Assert.Null(Of(model, "fc2"));
        Assert.Null(Of(model, "conv1"));
    }

    [Theory]
    [InlineData("act1")]
    [InlineData("flatten")]
    public void NonMePropLayerRejected(string name)
    {
        var model = Model();
        var e = Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, null, [name], seed: 1));
        Assert.Contains($"'{name}'", e.Message);
    }

    [Fact]
    public void UnknownLayerRejected()
    {
        var model = Model();
        var e = Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, null, ["conv9"], seed: 1));
        Assert.Contains("conv9", e.Message);
    }

    [Fact]
    public void InvalidRatioRejected()
    {
        var model = Model();
        Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, 0, 0, DecayShape.Full, null, null, seed: 1));
        Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, 0.1, 1.0, DecayShape.Full, null, null, seed: 1));
        Assert.Null(Of(model, "conv1"));
    }

    [Fact]
    public void RefusalForALaterLayerLeavesEarlierLayersUntouched()
    {
        var model = Model();
        var ratios = new Dictionary<string, double> { ["conv1"] = 0.1, ["conv2"] = 1.5 };
        Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, null, ratios, 0, DecayShape.Full, null, null, seed: 1));
        Assert.Null(Of(model, "conv1"));
        Assert.Null(Of(model, "conv2"));
    }

    [Fact]
    public void DefaultLayersSkipAConvOutputLayer()
    {
        // An all-conv network: conv1 -> act -> conv2 (the output layer, one channel a class) -> global pooling.
        var rng = new Rng(1);
        var model = new Sequential(
        [
            new Conv2d("conv1", 1, 4, 3, 1, 1, _compute, rng),
            new Activation("act1", ActivationKind.Relu),
            new Conv2d("conv2", 4, 10, 1, 1, 0, _compute, rng),
            new GlobalAvgPool2d("gap", _compute),
        ]);
        Assert.Equal(["conv1"], MePropSetup.DefaultLayers(model));
        MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, null, null, seed: 1);
        Assert.NotNull(Of(model, "conv1"));
        Assert.Null(Of(model, "conv2"));
    }

    [Fact]
    public void DefaultLayersOfANetworkWithoutConvolutionsAreItsHiddenLinearLayers()
    {
        var rng = new Rng(1);
        var model = new Sequential(
        [
            new Flatten("flatten"),
            new Linear("fc1", 64, 16, _compute, rng),
            new Activation("act1", ActivationKind.Relu),
            new Linear("fc2", 16, 16, _compute, rng),
            new Activation("act2", ActivationKind.Relu),
            new Linear("fc3", 16, 10, _compute, rng),
        ]);
        MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, null, null, seed: 1);
        Assert.Equal(SelectionPolicy.PerExample, PolicyOf(model, "fc1"));
        Assert.Equal(SelectionPolicy.PerExample, PolicyOf(model, "fc2"));
        Assert.Null(Of(model, "fc3"));
        // With convolutions the default is the convolutions alone (the paper's setting).
        Assert.Equal(["conv1", "conv2"], MePropSetup.DefaultLayers(Model()));
    }

    [Fact]
    public void DefaultWithNoLayerButTheOutputIsRefused()
    {
        var model = new Sequential([new Flatten("flatten"), new Linear("fc", 64, 10, _compute, new Rng(1))]);
        var e = Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, 0.1, 0, DecayShape.Full, null, null, seed: 1));
        Assert.Contains("output layer", e.Message);
        var empty = Assert.Throws<ArgumentException>(() => MePropSetup.Attach(Model(), 0.1, 0, DecayShape.Full, null, [], seed: 1));
        Assert.Contains("names no layer", empty.Message);
    }

    [Fact]
    public void EachLayerGetsItsOwnStreamAndSeedsRepeat()
    {
        var a = Model();
        var b = Model();
        var c = Model();
        MePropSetup.Attach(a, 0.1, 0, DecayShape.Full, SelectionPolicy.Random, ["conv1", "conv2", "fc1"], seed: 7);
        MePropSetup.Attach(b, 0.1, 0, DecayShape.Full, SelectionPolicy.Random, ["conv1", "conv2", "fc1"], seed: 7);
        MePropSetup.Attach(c, 0.1, 0, DecayShape.Full, SelectionPolicy.Random, ["conv1", "conv2", "fc1"], seed: 8);
        var states = new[] { "conv1", "conv2", "fc1" }.Select(n => Of(a, n)!.Rng.GetState()).ToArray();
        Assert.Equal(3, states.Select(s => string.Join(",", s)).Distinct().Count());
        foreach (string name in new[] { "conv1", "conv2", "fc1" })
        {
            Assert.Equal(Of(a, name)!.Rng.GetState(), Of(b, name)!.Rng.GetState());
            Assert.NotEqual(Of(a, name)!.Rng.GetState(), Of(c, name)!.Rng.GetState());
        }
    }

    [Fact]
    public void CliSpelling()
    {
        Assert.Equal("per-example-channel", MePropSetup.Cli(SelectionPolicy.PerExampleChannel));
        Assert.Equal("unified", MePropSetup.Cli(SelectionPolicy.Unified));
        Assert.Equal("per-channel", MePropSetup.Cli(SelectionPolicy.PerChannel));
    }

    [Fact]
    public void PaperCnnDefaultAttachesToBothConvolutions()
    {
        var model = ModelBuilder.Build(new ModelOptions(), 1, 8, 8, 10, _compute, seed: 2);
        MePropSetup.Attach(model, 0.05, 0, DecayShape.Full, null, null, seed: 1);
        var attached = model.Layers.OfType<IMePropLayer>().Where(l => l.Sparsifier is not null).Select(l => l.Name).ToArray();
        Assert.Equal(new[] { "conv1", "conv2" }, attached);
    }
}
