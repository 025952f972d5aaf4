using System.Text.Json;
using MeProp.Training;

using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Cli;

/// <summary>`--topk-mass`: an adaptive k keeps fewer entries than its cap, is stored with the run and kept on resume.</summary>
[Collection("Console")]
public class AdaptiveTopKCliTests
{
    private static string[] Args(string data, string outDir, params string[] extra) =>
        ["train", "--data", data, "--out", outDir, "--dev-size", "12", "--batch-size", "7", "--threads", "2", "--seed", "3", "--model", "paper-cnn", .. extra];

    private static double KeptFraction(string directory, string layer)
    {
        using var metrics = JsonDocument.Parse(File.ReadAllLines(Path.Combine(directory, Trainer.MetricsFile))[0]);
        return metrics.RootElement.GetProperty("kept_fraction").GetProperty(layer).GetDouble();
    }

    [Fact]
    public void AMassFractionKeepsFewerEntriesThanItsCapAndIsKeptOnResume()
    {
        using var data = TinyData();
        using var capped = new TempDirectory();
        using var adaptive = new TempDirectory();
        Assert.Equal(0, Run(Args(data.Path, capped.Path, "--epochs", "1", "--topk", "0.3")).Code);
        var result = Run(Args(data.Path, adaptive.Path, "--epochs", "1", "--topk", "0.3", "--topk-mass", "0.5"));
        Assert.True(result.Code == 0, result.Stderr);
        foreach (string layer in new[] { "conv1", "conv2" })
            Assert.True(KeptFraction(adaptive.Path, layer) < KeptFraction(capped.Path, layer), layer);
        Assert.Equal(0.5, Checkpoint.ReadOptions(adaptive.File(Trainer.LastCheckpoint)).MassFraction);

        string error = AssertOneLineError(Run("train", "--resume", adaptive.Path, "--epochs", "2", "--topk-mass", "0.9", "--data", data.Path), 1);
        Assert.Contains("--topk-mass 0.9 differs from the resumed run's 0.5", error);
        // The same value, without --topk, is no change.
        var same = Run("train", "--resume", adaptive.Path, "--epochs", "2", "--topk-mass", "0.5", "--data", data.Path);
        Assert.True(same.Code == 0, same.Stderr);
        Assert.Contains("need --topk", AssertOneLineError(Run("train", "--data", data.Path, "--topk-mass", "0.5", "--epochs", "1"), 1));
        Assert.Contains("per-channel or per-example", AssertOneLineError(Run(Args(data.Path, Path.Combine(adaptive.Path, "x"), "--topk", "0.3", "--topk-mass", "0.5", "--selection", "channel")), 1));
    }

    [Fact]
    public void ZeroMeanIsStoredWithTheRunAndKeptOnResume()
    {
        using var data = TinyData();
        using var plain = new TempDirectory();
        using var shifted = new TempDirectory();
        Assert.Equal(0, Run(Args(data.Path, plain.Path, "--epochs", "1", "--topk", "0.3", "--batch-norm")).Code);
        var result = Run(Args(data.Path, shifted.Path, "--epochs", "1", "--topk", "0.3", "--batch-norm", "--topk-zero-mean"));
        Assert.True(result.Code == 0, result.Stderr);
        Assert.True(Checkpoint.ReadOptions(shifted.File(Trainer.LastCheckpoint)).ZeroMean);
        Assert.False(Checkpoint.ReadOptions(plain.File(Trainer.LastCheckpoint)).ZeroMean);
        Assert.DoesNotContain("zero_mean", File.ReadAllText(plain.File(Trainer.SummaryFile)));
        // The shift changes the training (the same seed, the same entries kept, other values).
        Assert.NotEqual(File.ReadAllLines(plain.File(Trainer.MetricsFile))[0].Split(',')[1], File.ReadAllLines(shifted.File(Trainer.MetricsFile))[0].Split(',')[1]);

        Assert.Contains("--topk-zero-mean true differs from the resumed run's false",
            AssertOneLineError(Run("train", "--resume", plain.Path, "--epochs", "2", "--topk-zero-mean", "--data", data.Path), 1));
        var same = Run("train", "--resume", shifted.Path, "--epochs", "2", "--topk-zero-mean", "--data", data.Path);
        Assert.True(same.Code == 0, same.Stderr);
        Assert.Contains("need --topk", AssertOneLineError(Run("train", "--data", data.Path, "--topk-zero-mean", "--epochs", "1"), 1));
        Assert.Contains("channel selection keeps whole units",
            AssertOneLineError(Run(Args(data.Path, Path.Combine(shifted.Path, "x"), "--topk", "0.3", "--topk-zero-mean", "--selection", "channel")), 1));
    }
}
