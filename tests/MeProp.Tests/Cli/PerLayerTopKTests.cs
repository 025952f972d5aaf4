using System.Text.Json;
using MeProp.Training;

using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Cli;

/// <summary>
/// `--topk` per layer (`conv1=0.5,conv2=0.25`, or a ratio for every meProp layer plus overrides): each
/// named layer gets its own ratio (metrics.jsonl's kept_fraction per layer equals it: on the tiny data
/// every pool's size times its ratio is a whole number), the ratios are stored in the configuration and
/// kept on resume, and bad names or ratios are errors naming the layer.
/// </summary>
[Collection("Console")]
public class PerLayerTopKTests
{
    private static string[] Args(string data, string outDir, params string[] extra) =>
        ["train", "--data", data, "--out", outDir, "--dev-size", "12", "--batch-size", "7", "--threads", "2", "--seed", "3", .. extra];

    private static Dictionary<string, double> KeptFractions(string directory, int line = 0)
    {
        using var metrics = JsonDocument.Parse(File.ReadAllLines(Path.Combine(directory, Trainer.MetricsFile))[line]);
        return metrics.RootElement.GetProperty("kept_fraction").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
    }

    [Theory]
    [InlineData("per-channel")]
    [InlineData("channel")]
    public void EachNamedLayerKeepsItsOwnRatio(string selection)
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        // conv1's pools: 7 x 8 x 8 = 448 entries (or its 32 channels), conv2's 7 x 4 x 4 = 112 (or 64 channels).
        var result = Run(Args(data.Path, output.Path, "--model", "paper-cnn", "--epochs", "1", "--topk", "conv1=0.5,conv2=0.25", "--selection", selection));
        Assert.True(result.Code == 0, result.Stderr);
        var kept = KeptFractions(output.Path);
        Assert.Equal(["conv1", "conv2"], kept.Keys.Order());
        Assert.Equal(0.5, kept["conv1"], 12);
        Assert.Equal(0.25, kept["conv2"], 12);
        using var summary = JsonDocument.Parse(File.ReadAllText(output.File(Trainer.SummaryFile)));
        var ratios = summary.RootElement.GetProperty("config").GetProperty("layer_ratios");
        Assert.Equal(0.5, ratios.GetProperty("conv1").GetDouble());
        Assert.Equal(0.25, ratios.GetProperty("conv2").GetDouble());
        Assert.Equal(JsonValueKind.Null, summary.RootElement.GetProperty("config").GetProperty("top_k").ValueKind);
    }

    [Fact]
    public void ConfigurationsWithoutPerLayerRatiosReadAndWriteAsBefore()
    {
        // Not written when absent (old runs' configurations stay as they were), and absent when not written.
        string json = JsonSerializer.Serialize(new TrainOptions { TopK = 0.05 }, Json.Line);
        Assert.DoesNotContain("layer_ratios", json);
        Assert.DoesNotContain("uses_me_prop", json);
        Assert.Null(JsonSerializer.Deserialize<TrainOptions>(json, Json.Line)!.LayerRatios);
        var withRatios = new TrainOptions { LayerRatios = new() { ["conv2"] = 0.1, ["conv1"] = 0.2 } };
        var back = JsonSerializer.Deserialize<TrainOptions>(JsonSerializer.Serialize(withRatios, Json.Line), Json.Line)!;
        Assert.Equal(withRatios.LayerRatios, back.LayerRatios);
        Assert.True(back.UsesMeProp);
        back.Validate();
        Assert.Throws<ArgumentException>(() => (back with { LayerRatios = new() { ["conv1"] = 0 } }).Validate());
    }

    [Fact]
    public void ARatioForEveryLayerWithOverrides()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        var result = Run(Args(data.Path, output.Path, "--model", "paper-cnn", "--epochs", "1", "--topk", "0.5,conv2=0.25", "--meprop-layers", "conv1,conv2,fc1"));
        Assert.True(result.Code == 0, result.Stderr);
        var kept = KeptFractions(output.Path);
        Assert.Equal(["conv1", "conv2", "fc1"], kept.Keys.Order());
        Assert.Equal(0.5, kept["conv1"], 12);
        Assert.Equal(0.25, kept["conv2"], 12);
        Assert.InRange(kept["fc1"], 0.5, 0.51);
    }

    [Fact]
    public void ResumeKeepsTheRatiosAndReproducesTheRun()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string whole = Path.Combine(output.Path, "whole"), parts = Path.Combine(output.Path, "parts");
        string[] model = ["--model", "paper-cnn", "--topk", "conv2=0.25,conv1=0.5", "--decay", "0.6"];
        Assert.Equal(0, Run(Args(data.Path, whole, [.. model, "--epochs", "2"])).Code);
        Assert.Equal(0, Run(Args(data.Path, parts, [.. model, "--epochs", "1"])).Code);
        var changed = Run("train", "--resume", parts, "--epochs", "2", "--data", data.Path, "--topk", "conv1=0.5,conv2=0.5");
        Assert.Equal(1, changed.Code);
        Assert.Contains("--topk", changed.Stderr);
        var resumed = Run("train", "--resume", parts, "--epochs", "2", "--data", data.Path, "--topk", "conv2=0.25,conv1=0.5");
        Assert.True(resumed.Code == 0, resumed.Stderr);
        Assert.Equal(0.25, KeptFractions(parts, line: 1)["conv2"], 12);
        AssertSameRun(whole, parts, "after resume");
    }

    [Theory]
    [InlineData(1, "conv9", "--topk", "conv9=0.1")]
    [InlineData(1, "fc1", "--topk", "0.1,fc1=0.2")]
    [InlineData(1, "fc1", "--topk", "fc1=0.2", "--meprop-layers", "conv1")]
    [InlineData(1, "conv2", "--topk", "conv1=0.2", "--meprop-layers", "conv1,conv2")]
    [InlineData(1, "fc2", "--topk", "fc2=0.2")]
    [InlineData(2, "conv1", "--topk", "conv1=1.5")]
    [InlineData(2, "conv1", "--topk", "conv1=0.1,conv1=0.2")]
    [InlineData(2, "--topk", "--topk", "0.1,0.2")]
    public void ErrorsNameTheLayer(int code, string named, params string[] args)
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string error = AssertOneLineError(Run(Args(data.Path, Path.Combine(output.Path, "run"), ["--model", "paper-cnn", .. args])), code);
        Assert.Contains(named, error);
    }
}
