using System.Text.Json;
using MeProp.Cli.Commands;
using MeProp.Training;

namespace MeProp.Tests.Cli;

/// <summary>`meprop compare` on synthetic run directories, against statistics worked out by hand.</summary>
[Collection("Console")]
public class CompareCommandTests
{
    /// <summary>Three epochs whose dev accuracy peaks at epoch 2, where the test accuracy is <paramref name="bestTest"/>.</summary>
    private static string WriteRun(string root, string name, double bestTest, double backwardSeconds)
    {
        string directory = Path.Combine(root, name);
        Directory.CreateDirectory(directory);
        var lines = Enumerable.Range(1, 3).Select(e => JsonSerializer.Serialize(new EpochMetrics
        {
            Epoch = e,
            TrainLoss = 1.0 / e,
            DevAccuracy = e == 2 ? 0.995 : 0.99,
            TestAccuracy = e == 2 ? bestTest : 0.5,
            EpochSeconds = 10 * e,
            ForwardSeconds = 2,
            BackwardSeconds = backwardSeconds,
            UpdateSeconds = 0.5,
        }, Json.Line));
        File.WriteAllLines(Path.Combine(directory, Trainer.MetricsFile), lines);
        return directory;
    }

    [Fact]
    public void TableHoldsBestDevResultsAndThePairedDifference()
    {
        using var root = new TempDirectory();
        double[] dense = [0.990, 0.992, 0.989], sparse = [0.991, 0.994, 0.990];
        var denseRuns = dense.Select((t, i) => WriteRun(root.Path, $"dense-{i}", t, 4)).ToArray();
        var sparseRuns = sparse.Select((t, i) => WriteRun(root.Path, $"sparse-{i}", t, 1)).ToArray();
        string output = Path.Combine(root.Path, "out");
        var result = CliHarness.Run("compare", "--group", "dense=" + string.Join(",", denseRuns), "--group", "sparse=" + string.Join(",", sparseRuns),
            "--out", output, "--title", "Synthetic", "--timing-note", "Times: a test.");
        Assert.True(result.Code == 0, result.Stderr + result.Stdout);

        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "results.json")));
        var rows = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(["dense", "sparse"], rows.Select(r => r.GetProperty("name").GetString()));
        Assert.Equal([2, 2, 2], rows[0].GetProperty("best_epoch").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(dense, rows[0].GetProperty("test_accuracy").EnumerateArray().Select(e => e.GetDouble()));
        Assert.Equal([0.5, 0.5, 0.5], rows[0].GetProperty("final_test_accuracy").EnumerateArray().Select(e => e.GetDouble()));
        Assert.Equal([20.0, 20, 20], rows[0].GetProperty("mean_epoch_seconds").EnumerateArray().Select(e => e.GetDouble()));
        // Mean 0.990333, std 0.00152753 (99.0, 99.2, 98.9 %: deviations -0.0333, 0.1667, -0.1333 points).
        Assert.Equal(0.9903333, rows[0].GetProperty("test_mean").GetDouble(), 6);
        Assert.Equal(0.00152753, rows[0].GetProperty("test_std").GetDouble(), 7);
        Assert.Equal(JsonValueKind.Null, rows[0].GetProperty("test_delta_mean").ValueKind);
        // Paired differences 0.001, 0.002, 0.001: mean 0.00133333, std 0.00057735, half-width 4.303 * 0.00057735 / sqrt(3).
        Assert.Equal(0.00133333, rows[1].GetProperty("test_delta_mean").GetDouble(), 7);
        Assert.Equal(0.00143433, rows[1].GetProperty("test_delta_half_width").GetDouble(), 7);

        string md = File.ReadAllText(Path.Combine(output, "results.md"));
        Assert.Contains("# Synthetic", md);
        Assert.Contains("| dense | 3 | 3 | 2, 2, 2 | 99.03 ± 0.15 | 98.90-99.20 | — | 50.00 | 20.0 | 6.5 | 4.0 | 0.5 |", md);
        Assert.Contains("| sparse | 3 | 3 | 2, 2, 2 | 99.17 ± 0.21 | 99.00-99.40 | 0.13 ± 0.14 | 50.00 | 20.0 | 3.5 | 1.0 | 0.5 |", md);
        Assert.Contains("Times: a test.", md);
        foreach (string chart in new[] { "dev-accuracy.png", "dev-accuracy.svg", "train-loss.png", "train-loss.svg" })
            Assert.True(File.Exists(Path.Combine(output, chart)), chart);
    }

    [Fact]
    public void TimesCanLeaveOutTheFirstEpochs()
    {
        using var root = new TempDirectory();
        string run = WriteRun(root.Path, "a", 0.99, 1);
        string output = Path.Combine(root.Path, "out");
        var result = CliHarness.Run("compare", "--group", $"a={run}", "--out", output, "--times-from-epoch", "2");
        Assert.True(result.Code == 0, result.Stderr + result.Stdout);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "results.json")));
        // Epochs 2 and 3 took 20 and 30 s.
        Assert.Equal(25.0, doc.RootElement[0].GetProperty("mean_epoch_seconds")[0].GetDouble());
        Assert.Contains("over epochs 2 on", File.ReadAllText(Path.Combine(output, "results.md")));
        Assert.Equal(1, CliHarness.Run("compare", "--group", $"a={run}", "--out", output, "--times-from-epoch", "4").Code);
    }

    [Fact]
    public void RunsOfDifferentLengthsAreNotedAndEpochsReadsThemAlike()
    {
        using var root = new TempDirectory();
        string a = WriteRun(root.Path, "a", 0.9, 1), b = WriteRun(root.Path, "b", 0.95, 1);
        // b trained two epochs further, its best dev (0.999) at epoch 5 with test 0.97.
        File.AppendAllLines(Path.Combine(b, Trainer.MetricsFile), new[] { 4, 5 }.Select(e => JsonSerializer.Serialize(new EpochMetrics
        {
            Epoch = e, TrainLoss = 0.1, DevAccuracy = e == 5 ? 0.999 : 0.98, TestAccuracy = e == 5 ? 0.97 : 0.5, EpochSeconds = 10, ForwardSeconds = 2, BackwardSeconds = 1, UpdateSeconds = 0.5,
        }, Json.Line)));
        string all = Path.Combine(root.Path, "all"), alike = Path.Combine(root.Path, "alike");
        var whole = CliHarness.Run("compare", "--group", $"base={a}", "--group", $"longer={b}", "--out", all);
        Assert.True(whole.Code == 0, whole.Stderr);
        Assert.Contains("the runs have 3 to 5 epochs", whole.Stderr);
        var cut = CliHarness.Run("compare", "--group", $"base={a}", "--group", $"longer={b}", "--out", alike, "--epochs", "3");
        Assert.True(cut.Code == 0, cut.Stderr);
        Assert.DoesNotContain("note:", cut.Stderr);
        using var wholeRows = JsonDocument.Parse(File.ReadAllText(Path.Combine(all, "results.json")));
        using var cutRows = JsonDocument.Parse(File.ReadAllText(Path.Combine(alike, "results.json")));
        Assert.Equal(0.97, wholeRows.RootElement[1].GetProperty("test_accuracy")[0].GetDouble());
        Assert.Equal(0.95, cutRows.RootElement[1].GetProperty("test_accuracy")[0].GetDouble());
    }

    [Fact]
    public void UnpairedGroupsAndMissingRunsAreOneLineErrors()
    {
        using var root = new TempDirectory();
        string a = WriteRun(root.Path, "a", 0.9, 1), b = WriteRun(root.Path, "b", 0.9, 1);
        var unpaired = CliHarness.Run("compare", "--group", $"one={a},{b}", "--group", $"two={a}", "--out", Path.Combine(root.Path, "out"));
        Assert.Equal(1, unpaired.Code);
        Assert.Contains("paired by position", unpaired.Stderr);
        var missing = CliHarness.Run("compare", "--group", $"one={Path.Combine(root.Path, "nothing")}", "--out", Path.Combine(root.Path, "out"));
        Assert.Equal(1, missing.Code);
        Assert.Contains("no metrics.jsonl", missing.Stderr);
        var malformed = CliHarness.Run("compare", "--group", a, "--out", Path.Combine(root.Path, "out"));
        Assert.Equal(1, malformed.Code);
        Assert.Contains("NAME=RUN_DIR", malformed.Stderr);
        Assert.Contains("no run directories after '='", CliHarness.AssertOneLineError(CliHarness.Run("compare", "--group", "one=,", "--out", Path.Combine(root.Path, "out")), 1));
    }

    [Fact]
    public void RunsPairedWithDifferentRecordedSeedsAreRefused()
    {
        using var root = new TempDirectory();
        string[] dense = [WriteRun(root.Path, "dense-1", 0.9, 1), WriteRun(root.Path, "dense-2", 0.9, 1)];
        string[] sparse = [WriteRun(root.Path, "sparse-1", 0.9, 1), WriteRun(root.Path, "sparse-2", 0.9, 1)];
        foreach (var (directory, seed) in new[] { (dense[0], 1), (dense[1], 2), (sparse[0], 1), (sparse[1], 2) })
            File.WriteAllText(Path.Combine(directory, Trainer.SummaryFile), $"{{\"config\": {{\"seed\": {seed}}}, \"best_epoch\": 2}}");
        var swapped = CliHarness.Run("compare", "--group", $"dense={dense[0]},{dense[1]}", "--group", $"sparse={sparse[1]},{sparse[0]}", "--out", Path.Combine(root.Path, "out"));
        Assert.Equal(1, swapped.Code);
        Assert.Contains("--group sparse: run 1", swapped.Stderr);
        Assert.Contains("has seed 2, the baseline's run 1", swapped.Stderr);
        var paired = CliHarness.Run("compare", "--group", $"dense={dense[0]},{dense[1]}", "--group", $"sparse={sparse[0]},{sparse[1]}", "--out", Path.Combine(root.Path, "out"));
        Assert.True(paired.Code == 0, paired.Stderr);
    }

    [Fact]
    public void AnUnfinishedRunsSeedIsReadFromItsCheckpoint()
    {
        using var data = CliHarness.TinyData();
        using var root = new TempDirectory();
        string[] runs = [Path.Combine(root.Path, "seed-1"), Path.Combine(root.Path, "seed-2")];
        for (int i = 0; i < 2; i++)
        {
            var trained = CliHarness.Run("train", "--data", data.Path, "--out", runs[i], "--model", "mlp", "--hidden-size", "8", "--dev-size", "12",
                "--batch-size", "7", "--threads", "1", "--epochs", "1", "--seed", $"{i + 1}");
            Assert.True(trained.Code == 0, trained.Stderr);
            File.Delete(Path.Combine(runs[i], Trainer.SummaryFile));   // as while it trains
        }
        Assert.Equal(2UL, CompareCommand.RecordedSeed(runs[1]));
        var swapped = CliHarness.Run("compare", "--group", $"a={runs[0]}", "--group", $"b={runs[1]}", "--out", Path.Combine(root.Path, "out"));
        Assert.Equal(1, swapped.Code);
        Assert.Contains("has seed 2, the baseline's run 1", swapped.Stderr);
    }
}
