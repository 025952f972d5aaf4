using System.Text.Json;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Sparsity;
using MeProp.Training;
using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Models;

/// <summary>
/// meProp per layer in a network file ("meprop": {"ratio", "decay", "selection", "decay_shape"} on conv2d
/// and linear layers): applied when the model is built, kept in checkpoints' network description (so
/// resume and eval rebuild it), misplaced or bad settings refused naming the layer.
/// </summary>
[Collection("Console")]
public class NetworkMePropTests
{
    private const string Network = """
        {"input": [1, 8, 8], "classes": 10, "layers": [
          {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": "same"}, {"type": "relu"},
          {"type": "maxpool", "kernel_size": 2},
          {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": "same", "meprop": {"ratio": 0.25, "decay": 0.6, "selection": "channel"}},
          {"type": "relu"}, {"type": "flatten"},
          {"type": "linear", "out_features": 16, "meprop": {"ratio": 0.5, "zero_mean": true}}, {"type": "relu"},
          {"type": "linear", "out_features": 10}]}
        """;

    private static Sequential Build(string json)
    {
        using var compute = new ComputeContext(1);
        return NetworkFactory.Build(NetworkSpec.Parse(json, "net.json"), compute, 1);
    }

    [Fact]
    public void LayersGetTheirSettingsWhenBuilt()
    {
        var model = Build(Network);
        Assert.Null(((IMePropLayer)model.Layer("conv1")).Sparsifier);
        Assert.Equal(new MePropOptions { Ratio = 0.25, Decay = 0.6, Selection = SelectionPolicy.Channel }, ((IMePropLayer)model.Layer("conv2")).Sparsifier!.Options);
        Assert.Equal(new MePropOptions { Ratio = 0.5, Selection = SelectionPolicy.PerExample, ZeroMean = true }, ((IMePropLayer)model.Layer("fc1")).Sparsifier!.Options);
        Assert.Null(((IMePropLayer)model.Layer("fc2")).Sparsifier);
        // Written back only where set.
        string json = model.Spec!.ToJson();
        Assert.Equal(2, json.Split("\"meprop\"").Length - 1);
        Assert.Equal(1, json.Split("\"zero_mean\": true").Length - 1);
        Assert.Equal(json, NetworkSpec.Parse(json, "again").ToJson());
    }

    [Theory]
    [InlineData("""{"type": "relu", "meprop": {"ratio": 0.1}}""", "act1")]
    [InlineData("""{"type": "linear", "out_features": 16, "meprop": {"ratio": 1.5}}""", "fc1")]
    [InlineData("""{"type": "linear", "out_features": 16, "meprop": {"ratio": 0.1, "selection": "channel"}}""", "fc1")]
    [InlineData("""{"type": "linear", "out_features": 16, "meprop": {"ratio": 0.1, "selection": "sideways"}}""", "fc1")]
    [InlineData("""{"type": "linear", "out_features": 16, "meprop": {"ratio": 0.1, "decay_shape": "round"}}""", "fc1")]
    public void BadSettingsNameTheLayer(string layer, string name)
    {
        string json = $$"""{"input": [4], "classes": 10, "layers": [{{layer}}, {"type": "linear", "out_features": 10}]}""";
        var error = Assert.Throws<ModelSpecException>(() => Build(json));
        Assert.StartsWith(name + ":", error.Message);
    }

    [Fact]
    public void TheOutputLayerIsRefused()
    {
        var error = Assert.Throws<ModelSpecException>(() => Build("""{"input": [4], "classes": 10, "layers": [{"type": "linear", "out_features": 10, "meprop": {"ratio": 0.1}}]}"""));
        Assert.Contains("fc1", error.Message);
        Assert.Throws<ModelSpecException>(() => NetworkSpec.Parse("""{"input": [4], "classes": 10, "layers": [{"type": "linear", "out_features": 10, "meprop": {"ratio": 0.1, "rato": 1}}]}""", "net.json"));
    }

    [Fact]
    public void TrainsWithTheFileSettingsAndResumes()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string network = output.File("net.json");
        File.WriteAllText(network, Network);
        string whole = output.File("whole"), parts = output.File("parts");
        string[] Args(string dir, string epochs) =>
            ["train", "--data", data.Path, "--out", dir, "--dev-size", "12", "--batch-size", "7", "--threads", "2", "--seed", "3", "--model", network, "--epochs", epochs];
        var trained = Run(Args(whole, "2"));
        Assert.True(trained.Code == 0, trained.Stderr);
        Assert.Equal(0, Run(Args(parts, "1")).Code);
        var resumed = Run("train", "--resume", parts, "--epochs", "2", "--data", data.Path);
        Assert.True(resumed.Code == 0, resumed.Stderr);
        Assert.Equal(MetricsWithoutTimes(whole), MetricsWithoutTimes(parts));
        using var line = JsonDocument.Parse(File.ReadAllLines(Path.Combine(whole, Trainer.MetricsFile))[0]);
        var kept = line.RootElement.GetProperty("kept_fraction").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
        Assert.Equal(["conv2", "fc1"], kept.Keys.Order());
        Assert.Equal(0.25, kept["conv2"], 12); // 2 of 8 channels
        Assert.Equal(0.5, kept["fc1"], 12);    // 8 of 16 outputs per example
        File.Delete(network);
        var eval = Run("eval", "--checkpoint", whole, "--data", data.Path);
        Assert.True(eval.Code == 0, eval.Stderr);
    }

    [Fact]
    public void ANetworkWithFlatInputTrainsEvaluatesAndPredictsOnImages()
    {
        const string flat = """
            {"input": [64], "classes": 10, "layers": [
              {"type": "linear", "out_features": 16, "meprop": {"ratio": 0.5}}, {"type": "relu"},
              {"type": "linear", "out_features": 10}]}
            """;
        using var compute = new ComputeContext(1);
        var model = NetworkFactory.Build(NetworkSpec.Parse(flat, "flat.json"), compute, 1);
        var images = new MeProp.Tensors.Tensor(3, 1, 8, 8);
        var random = new Random(4);
        for (int i = 0; i < images.Length; i++) images.Span[i] = (float)random.NextDouble();
        var flattened = images.Clone().Reshape(3, 64);
        Assert.Equal(model.Forward(flattened, training: false).Span.ToArray(), model.Forward(images, training: false).Span.ToArray());
        Assert.Equal([3, 10], model.OutputShape(images.Shape));
        Assert.Throws<ArgumentException>(() => model.Forward(new MeProp.Tensors.Tensor(3, 1, 8, 7), training: false));

        using var data = TinyData();
        using var output = new TempDirectory();
        string network = output.File("flat.json"), run = output.File("run");
        File.WriteAllText(network, flat);
        var trained = Run("train", "--data", data.Path, "--out", run, "--dev-size", "12", "--batch-size", "7", "--threads", "1", "--model", network, "--epochs", "1");
        Assert.True(trained.Code == 0, trained.Stderr);
        var eval = Run("eval", "--checkpoint", run, "--data", data.Path);
        Assert.True(eval.Code == 0, eval.Stderr);
        var predicted = Run("predict", "--checkpoint", run, "--data", data.Path, "--count", "2", "--json");
        Assert.True(predicted.Code == 0, predicted.Stderr);
        string good = output.File("digit.png"), bad = output.File("big.png");
        using (var stream = File.Create(good)) new StbImageWriteSharp.ImageWriter().WritePng(new byte[64], 8, 8, StbImageWriteSharp.ColorComponents.Grey, stream);
        using (var stream = File.Create(bad)) new StbImageWriteSharp.ImageWriter().WritePng(new byte[100], 10, 10, StbImageWriteSharp.ColorComponents.Grey, stream);
        var file = Run("predict", "--checkpoint", run, good);
        Assert.True(file.Code == 0, file.Stderr);
        Assert.Contains("big.png: 10x10 pixels, the network takes 64 values per image", AssertOneLineError(Run("predict", "--checkpoint", run, bad), 1));
    }

    [Fact]
    public void TheDescriptionOfAModelHoldsTheMePropItsLayersHave()
    {
        const string residual = """
            {"input": [1, 8, 8], "classes": 10, "layers": [
              {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "meprop": {"ratio": 0.5}}, {"type": "relu"},
              {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"}]},
              {"type": "flatten"}, {"type": "linear", "out_features": 16}, {"type": "relu"}, {"type": "linear", "out_features": 10}]}
            """;
        using var compute = new ComputeContext(1);
        var model = NetworkFactory.Build(NetworkSpec.Parse(residual, "net.json"), compute, 1);
        ((Conv2d)model.Layer("conv1")).Sparsifier = null;
        var attached = new MePropOptions { Ratio = 0.2, Decay = 0.6, DecayShape = DecayShape.ChannelPosition, ZeroMean = true };
        ((Conv2d)model.Layer("res1.conv1")).Sparsifier = new GradientSparsifier("res1.conv1", attached, convolutional: true, seed: 2);
        var fc1 = new MePropOptions { Ratio = 0.25, Selection = SelectionPolicy.PerExample, MassFraction = 0.9 };
        ((Linear)model.Layer("fc1")).Sparsifier = new GradientSparsifier("fc1", fc1, convolutional: false, seed: 2);

        var described = NetworkFactory.WithAttachedMeProp(model.Spec!, model);
        var rebuilt = NetworkFactory.Build(NetworkSpec.Parse(described.ToJson(), "again"), compute, 3);
        Assert.Null(((Conv2d)rebuilt.Layer("conv1")).Sparsifier);
        Assert.Equal(attached, ((Conv2d)rebuilt.Layer("res1.conv1")).Sparsifier!.Options);
        Assert.Equal(fc1, ((Linear)rebuilt.Layer("fc1")).Sparsifier!.Options);
        Assert.Null(((Linear)rebuilt.Layer("fc2")).Sparsifier);
    }
}
