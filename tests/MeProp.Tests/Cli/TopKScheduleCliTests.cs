using System.Text.Json;
using MeProp.Tensors;
using MeProp.Training;

using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Cli;

/// <summary>
/// `--topk-schedule`, `--dense-warmup`, `--dense-every`: metrics.jsonl records the ratio each meProp layer had
/// per epoch (topk_ratio) and kept_fraction follows it (on the tiny data conv1's pools hold 7 x 8 x 8 = 448
/// entries and conv2's 7 x 4 x 4 = 112, so the ratios below keep whole numbers), and a resumed scheduled run
/// equals the uninterrupted one.
/// </summary>
[Collection("Console")]
public class TopKScheduleCliTests
{
    private static string[] Args(string data, string outDir, params string[] extra) =>
        ["train", "--data", data, "--out", outDir, "--dev-size", "12", "--batch-size", "7", "--threads", "2", "--seed", "3", "--model", "paper-cnn", .. extra];

    private static List<(Dictionary<string, double> Ratio, Dictionary<string, double> Kept)> Epochs(string directory) =>
        File.ReadAllLines(Path.Combine(directory, Trainer.MetricsFile)).Select(line =>
        {
            using var metrics = JsonDocument.Parse(line);
            Dictionary<string, double> Read(string key) => metrics.RootElement.GetProperty(key).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
            return (Read("topk_ratio"), Read("kept_fraction"));
        }).ToList();

    [Fact]
    public void TheRatioInForceIsWrittenPerEpochAndKeptFractionFollowsIt()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        // linear 0.5 -> 0.25 over 5 epochs: 0.5, 0.4375, 0.375, 0.3125, 0.25; epoch 1 (warm-up) and 4 (every 4th) dense.
        var result = Run(Args(data.Path, output.Path, "--epochs", "5", "--topk", "conv1=0.5,conv2=0.1", "--topk-schedule", "linear:0.5:0.25", "--dense-warmup", "1", "--dense-every", "4"));
        Assert.True(result.Code == 0, result.Stderr);
        double[] expected = [1, 0.4375, 0.375, 1, 0.25];
        var epochs = Epochs(output.Path);
        Assert.Equal(5, epochs.Count);
        for (int e = 0; e < 5; e++)
            foreach (string layer in new[] { "conv1", "conv2" })
            {
                Assert.Equal(expected[e], epochs[e].Ratio[layer], 12);
                Assert.Equal(expected[e], epochs[e].Kept[layer], 12);
            }
        using var summary = JsonDocument.Parse(File.ReadAllText(output.File(Trainer.SummaryFile)));
        var schedule = summary.RootElement.GetProperty("config").GetProperty("top_k_schedule");
        Assert.Equal("linear", schedule.GetProperty("shape").GetString());
        Assert.Equal(4, schedule.GetProperty("dense_every").GetInt32());
    }

    [Fact]
    public void AConstantScheduleKeepsEachLayersRatioAndRunsWithoutOneWriteNoRatio()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string warm = Path.Combine(output.Path, "warm"), plain = Path.Combine(output.Path, "plain");
        Assert.Equal(0, Run(Args(data.Path, warm, "--epochs", "2", "--topk", "conv1=0.5,conv2=0.25", "--dense-warmup", "1")).Code);
        var epochs = Epochs(warm);
        Assert.Equal(1.0, epochs[0].Kept["conv1"], 12);
        Assert.Equal(1.0, epochs[0].Kept["conv2"], 12);
        Assert.Equal(0.5, epochs[1].Ratio["conv1"], 12);
        Assert.Equal(0.25, epochs[1].Kept["conv2"], 12);
        Assert.Equal(0, Run(Args(data.Path, plain, "--epochs", "1", "--topk", "0.5")).Code);
        Assert.DoesNotContain("topk_ratio", File.ReadAllText(Path.Combine(plain, Trainer.MetricsFile)));
        Assert.DoesNotContain("schedule", File.ReadAllText(Path.Combine(plain, Trainer.SummaryFile)));
    }

    [Fact]
    public void ADenseWarmUpEpochTrainsAsADenseRunToTheBit()
    {
        // Every entry kept: the meProp layers run the dense backward, so the first epoch's loss and weights are
        // a dense run's exactly (the selection runs too, for the random stream; without a decay it keeps no state).
        using var data = TinyData();
        using var output = new TempDirectory();
        string warm = Path.Combine(output.Path, "warm"), dense = Path.Combine(output.Path, "dense");
        Assert.Equal(0, Run(Args(data.Path, warm, "--epochs", "1", "--topk", "0.25", "--meprop-layers", "conv1,conv2,fc1", "--dense-warmup", "1")).Code);
        Assert.Equal(0, Run(Args(data.Path, dense, "--epochs", "1")).Code);
        double Loss(string directory)
        {
            using var metrics = JsonDocument.Parse(File.ReadAllLines(Path.Combine(directory, Trainer.MetricsFile)).Single());
            return metrics.RootElement.GetProperty("train_loss").GetDouble();
        }
        Assert.Equal(Loss(dense), Loss(warm));
        AssertSameCheckpointTensors(dense, warm, "after a dense warm-up epoch");
    }

    [Fact]
    public void DenseEpochsAreDenseWithAnAdaptiveKToo()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        Assert.Equal(0, Run(Args(data.Path, output.Path, "--epochs", "2", "--topk", "0.5", "--topk-mass", "0.5", "--dense-warmup", "1")).Code);
        var epochs = Epochs(output.Path);
        Assert.Equal(1.0, epochs[0].Kept["conv1"], 12);
        Assert.Equal(1.0, epochs[0].Kept["conv2"], 12);
        Assert.True(epochs[1].Kept["conv2"] < 0.5, $"kept {epochs[1].Kept["conv2"]}");
    }

    [Fact]
    public void ResumeOfAScheduledRunEqualsTheUninterruptedRun()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string whole = Path.Combine(output.Path, "whole"), parts = Path.Combine(output.Path, "parts");
        string[] meProp = ["--topk", "0.5", "--decay", "0.6", "--topk-schedule", "cosine:0.5:0.25", "--dense-every", "2"];
        Assert.Equal(0, Run(Args(data.Path, whole, [.. meProp, "--epochs", "3"])).Code);
        Assert.Equal(0, Run(Args(data.Path, parts, [.. meProp, "--epochs", "1"])).Code);
        var changed = Run("train", "--resume", parts, "--epochs", "3", "--data", data.Path, "--topk-schedule", "linear:0.5:0.25");
        Assert.Equal(1, changed.Code);
        Assert.Contains("--topk-schedule", changed.Stderr);
        var resumed = Run("train", "--resume", parts, "--epochs", "3", "--data", data.Path);
        Assert.True(resumed.Code == 0, resumed.Stderr);
        Assert.Equal([0.5, 1, 0.25], Epochs(parts).Select(e => e.Ratio["conv1"]));
        AssertSameRun(whole, parts, "after resume");
    }

    [Fact]
    public void AScheduleNeedsTopK()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string error = AssertOneLineError(Run(Args(data.Path, Path.Combine(output.Path, "run"), "--dense-warmup", "1")), 1);
        Assert.Contains("--topk", error);
        AssertOneLineError(Run(Args(data.Path, Path.Combine(output.Path, "run2"), "--topk", "0.5", "--topk-schedule", "step:0.5:0.1")), 1);
        // meProp from a network file's layers is scheduled as --topk's is.
        string network = output.File("net.json");
        File.WriteAllText(network, """{"input": [1, 8, 8], "classes": 10, "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "meprop": {"ratio": 0.25}}, {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]}""");
        string scheduled = Path.Combine(output.Path, "file");
        var result = Run("train", "--data", data.Path, "--out", scheduled, "--dev-size", "12", "--batch-size", "7", "--threads", "2", "--model", network, "--dense-warmup", "1", "--epochs", "2");
        Assert.True(result.Code == 0, result.Stderr);
        Assert.Equal([1.0, 0.25], Epochs(scheduled).Select(e => e.Ratio["conv1"]));
        Assert.Equal(1.0, Epochs(scheduled)[0].Kept["conv1"], 12);
    }
}
