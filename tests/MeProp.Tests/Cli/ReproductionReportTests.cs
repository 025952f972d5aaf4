using System.Text.Json;
using MeProp.Cli.Reproduction;
using MeProp.Training;

namespace MeProp.Tests.Cli;

/// <summary>
/// The reproduction's table-making on synthetic run directories: best-dev-epoch results, mean, sample
/// standard deviation and the paired 95% interval, checked against values worked out by hand.
/// </summary>
public class ReproductionReportTests
{
    private static readonly ReproductionConfig Dense = ReproductionGrid.All.Single(c => c.Name == "table2-dense");
    private static readonly ReproductionConfig Top5 = ReproductionGrid.All.Single(c => c.Name == "table2-top5-d0.6");

    /// <summary>A run of three epochs whose dev accuracy peaks at epoch 2, where the test accuracy is <paramref name="bestTest"/>.</summary>
    private static void WriteRun(string root, ReproductionConfig config, ulong seed, double bestTest, int epochs = 3)
    {
        string directory = Path.Combine(root, config.Name, $"seed-{seed}");
        Directory.CreateDirectory(directory);
        var lines = Enumerable.Range(1, epochs).Select(e => JsonSerializer.Serialize(new EpochMetrics
        {
            Epoch = e,
            TrainLoss = 1.0 / e,
            DevAccuracy = e == 2 ? 0.995 : 0.99,
            TestAccuracy = e == 2 ? bestTest : 0.5,
            EpochSeconds = 10 * e,
        }, Json.Line));
        File.WriteAllLines(Path.Combine(directory, Trainer.MetricsFile), lines);
    }

    [Fact]
    public void ReportsTheShareOfNonZeroGradientEachLayerUsed()
    {
        using var root = new TempDirectory();
        // Two seeds, two epochs each. Epoch e of seed s: conv2's dL/dy is 4% non-zero and the backward did
        // 2% of the dense multiply-adds in epoch 1 (half the non-zeros), 1% of 1% in epoch 2 (all of them).
        foreach (ulong seed in new ulong[] { 1, 2 })
        {
            string directory = Path.Combine(root.Path, Top5.Name, $"seed-{seed}");
            Directory.CreateDirectory(directory);
            var lines = new[] { (0.04, 200L), (0.01, 100L) }.Select((p, i) => JsonSerializer.Serialize(new EpochMetrics
            {
                Epoch = i + 1, TrainLoss = 1, DevAccuracy = 0.99, TestAccuracy = 0.99,
                GradientDensity = new() { ["conv2"] = seed == 1 ? p.Item1 : p.Item1 * 2 },
                BackwardMacs = new() { ["conv2"] = seed == 1 ? p.Item2 : p.Item2 * 2, ["fc1"] = 50 },
                DenseBackwardMacs = new() { ["conv2"] = 10000, ["fc1"] = 50 },
            }, Json.Line));
            File.WriteAllLines(Path.Combine(directory, Trainer.MetricsFile), lines);
        }
        var row = ReproductionReport.Collect(root.Path, [Top5], epochs: 2, plannedSeeds: [1, 2]).Single();
        // Seed 2 has twice the density and twice the work: the same shares used, 0.5 then 1.
        Assert.Equal([0.5, 1.0], row.NonZeroKept["conv2"]);
        Assert.Equal([0.06, 0.015], row.GradientDensity["conv2"]);
        Assert.False(row.NonZeroKept.ContainsKey("fc1"));
        Assert.Contains("| top5-d0.6 | 6.0% → 1.5% | 50.0% → 100.0% |", ReproductionReport.ToMarkdown([row], "timing"));
    }

    [Fact]
    public void StatisticsMatchHandComputedValues()
    {
        using var root = new TempDirectory();
        double[] dense = [0.990, 0.992, 0.989], top5 = [0.991, 0.994, 0.990];
        for (int i = 0; i < 3; i++)
        {
            WriteRun(root.Path, Dense, (ulong)i + 1, dense[i]);
            WriteRun(root.Path, Top5, (ulong)i + 1, top5[i]);
        }
        var rows = ReproductionReport.Collect(root.Path, [Dense, Top5], epochs: 3, plannedSeeds: [1, 2, 3]);

        var denseRow = rows[0];
        Assert.Equal([1UL, 2, 3], denseRow.Seeds);
        Assert.Equal([2, 2, 2], denseRow.BestEpoch);
        Assert.Equal(dense, denseRow.TestAccuracy);
        Assert.Equal([0.5, 0.5, 0.5], denseRow.FinalTestAccuracy);
        Assert.Equal(20.0, denseRow.MeanEpochSeconds!.Value, 12);
        Assert.False(denseRow.Partial);

        // Test accuracy in %: 99.0, 99.2, 98.9 -> mean 99.0333, deviations -0.0333, 0.1667, -0.1333,
        // squares sum 0.046667, / 2 -> 0.023333, std 0.152753.
        var percent = denseRow.TestAccuracy.Select(v => 100 * v).ToList();
        Assert.Equal(99.033333, SeedStatistics.Mean(percent), 5);
        Assert.Equal(0.152753, SeedStatistics.StandardDeviation(percent), 5);

        // Paired differences 0.1, 0.2, 0.1 points: mean 0.133333, std 0.057735, t(0.975, 2) = 4.303,
        // half-width 4.303 * 0.057735 / sqrt(3) = 0.143433.
        var (mean, halfWidth, pairs) = ReproductionReport.PairedTest(rows[1], denseRow);
        Assert.Equal(3, pairs);
        Assert.Equal(0.133333, mean, 5);
        Assert.Equal(0.143433, halfWidth, 5);

        string markdown = ReproductionReport.ToMarkdown(rows, "timing note");
        Assert.Contains("| dense | 3 | 3 | 2.0 | 99.50 ± 0.00 | 99.03 ± 0.15 | [98.90, 99.20] |", markdown);
        Assert.Contains("| top5-d0.6 | 3 | 3 | 2.0 | 99.50 ± 0.00 | 99.17 ± 0.21 | [99.00, 99.40] | +0.13 [-0.01, +0.28] (n=3) |", markdown);
        Assert.Contains("no difference from dense that the seeds can resolve", markdown);
        Assert.DoesNotContain("Partial", markdown);
    }

    [Fact]
    public void TheTitleSaysPartialUntilEveryRunIsIn()
    {
        using var root = new TempDirectory();
        WriteRun(root.Path, Dense, 1, 0.990);
        WriteRun(root.Path, Top5, 1, 0.991, epochs: 2);
        var partial = ReproductionReport.Collect(root.Path, [Dense, Top5], epochs: 3, plannedSeeds: [1]);
        Assert.StartsWith("# meProp-CNN on MNIST: a reproduction of Tables 2 and 3 (partial: runs unfinished)\n",
            ReproductionReport.ToMarkdown(partial, "timing").ReplaceLineEndings("\n"));
        WriteRun(root.Path, Top5, 1, 0.991);
        var finished = ReproductionReport.Collect(root.Path, [Dense, Top5], epochs: 3, plannedSeeds: [1]);
        Assert.StartsWith("# meProp-CNN on MNIST: a reproduction of Tables 2 and 3\n",
            ReproductionReport.ToMarkdown(finished, "timing").ReplaceLineEndings("\n"));
    }

    [Fact]
    public void RunsLongerThanTheEpochsAskedForAreReadAsFarAsThem()
    {
        using var root = new TempDirectory();
        // Dev peaks at epoch 2 (0.995); epoch 4 beats it, but a report over 3 epochs must not see it.
        WriteRun(root.Path, Dense, 1, 0.990, epochs: 3);
        string metrics = Path.Combine(root.Path, Dense.Name, "seed-1", Trainer.MetricsFile);
        File.AppendAllLines(metrics, [JsonSerializer.Serialize(new EpochMetrics { Epoch = 4, TrainLoss = 0.1, DevAccuracy = 0.999, TestAccuracy = 0.7, EpochSeconds = 40 }, Json.Line)]);
        var row = ReproductionReport.Collect(root.Path, [Dense], epochs: 3, plannedSeeds: [1]).Single();
        Assert.Equal([3], row.EpochsCompleted);
        Assert.Equal([2], row.BestEpoch);
        Assert.Equal([0.5], row.FinalTestAccuracy);
        Assert.Equal(20.0, row.MeanEpochSeconds!.Value, 12);
        Assert.Equal([4], ReproductionReport.Collect(root.Path, [Dense], epochs: 4, plannedSeeds: [1]).Single().BestEpoch);
    }

    [Fact]
    public void WithoutADevSplitTheLastEpochIsTheBestAsTheTrainerTakesIt()
    {
        using var root = new TempDirectory();
        string directory = Path.Combine(root.Path, Dense.Name, "seed-1");
        Directory.CreateDirectory(directory);
        File.WriteAllLines(Path.Combine(directory, Trainer.MetricsFile), Enumerable.Range(1, 3).Select(e =>
            JsonSerializer.Serialize(new EpochMetrics { Epoch = e, TrainLoss = 1.0 / e, TestAccuracy = 0.9 + e / 100.0, EpochSeconds = 1 }, Json.Line)));
        var rows = ReproductionReport.Collect(root.Path, [Dense], epochs: 3, plannedSeeds: [1]);
        Assert.Equal([3], rows[0].BestEpoch);
        Assert.Equal([0.93], rows[0].TestAccuracy);
        Assert.Contains("\"dev_accuracy\": [\n      \"NaN\"\n    ]", ReproductionReport.ToJson(rows).ReplaceLineEndings("\n"));
        Assert.Contains("| dense | 1 | 3 | 3.0 | — | 93.00 |", ReproductionReport.ToMarkdown(rows, "timing"));
    }

    [Theory]
    [InlineData(0.9906, "below")]
    [InlineData(0.990651, "within")]   // 99.0651 shows as 99.07, the range's end as the paper gives it
    [InlineData(0.9917, "within")]
    [InlineData(0.9927, "within")]
    [InlineData(0.9928, "above")]
    public void APositionAgainstThePapersRangeIsBelowWithinOrAbove(double mean, string position) =>
        Assert.Equal(position, ReproductionReport.RangePosition(mean, [0.9907, 0.9927]));

    [Fact]
    public void ComparesTheRandomControlWithTopKOfTheSameAmount()
    {
        using var root = new TempDirectory();
        var top5Decay0 = ReproductionGrid.All.Single(c => c.Name == "table2-top5-d0");
        var random5 = ReproductionGrid.All.Single(c => c.Name == "table2-random5");
        double[] byMagnitude = [0.992, 0.991, 0.993], random = [0.985, 0.986, 0.984];
        for (int i = 0; i < 3; i++)
        {
            WriteRun(root.Path, top5Decay0, (ulong)i + 1, byMagnitude[i]);
            WriteRun(root.Path, random5, (ulong)i + 1, random[i]);
        }
        // The other top-k rows must not be taken as the control's counterpart.
        WriteRun(root.Path, Top5, 1, 0.999);
        WriteRun(root.Path, Top5, 2, 0.999);
        // top5-d0.6 comes first, so that only the decay tells the counterpart.
        var rows = ReproductionReport.Collect(root.Path, [Top5, top5Decay0, random5], epochs: 3, plannedSeeds: [1, 2, 3]);
        // Differences random - top5-d0: -0.7, -0.5, -0.9 points: mean -0.7, std 0.2,
        // half-width 4.303 * 0.2 / sqrt(3) = 0.496868.
        var (mean, halfWidth, pairs) = ReproductionReport.PairedTest(rows[2], rows[1]);
        Assert.Equal((-0.7, 0.496868, 3), (Math.Round(mean, 6), Math.Round(halfWidth, 6), pairs));
        string markdown = ReproductionReport.ToMarkdown(rows, "timing note");
        Assert.Contains("Control: random5 − top5-d0 (the same k per feature map, chosen at random rather than by magnitude): " +
                        "-0.70 [-1.20, -0.20] points (95%, 3 seeds); choosing by magnitude matters, not only the amount kept.", markdown);
    }

    [Fact]
    public void PairsOnlyCommonSeedsAndMarksPartialRuns()
    {
        using var root = new TempDirectory();
        WriteRun(root.Path, Dense, 1, 0.990);
        WriteRun(root.Path, Dense, 2, 0.992);
        WriteRun(root.Path, Top5, 2, 0.995);
        WriteRun(root.Path, Top5, 3, 0.980, epochs: 2);
        var rows = ReproductionReport.Collect(root.Path, [Dense, Top5], epochs: 3, plannedSeeds: [1, 2, 3]);
        Assert.Equal([2UL, 3], rows[1].Seeds);
        Assert.Equal([3, 2], rows[1].EpochsCompleted);
        Assert.True(rows[1].Partial);
        var (mean, halfWidth, pairs) = ReproductionReport.PairedTest(rows[1], rows[0]);
        Assert.Equal(1, pairs);
        Assert.Equal(0.3, mean, 9);
        Assert.True(double.IsNaN(halfWidth));
        string markdown = ReproductionReport.ToMarkdown(rows, "timing note");
        Assert.Contains("2-3 of 3 (partial)", markdown);
        Assert.Contains("Partial: dense, top5-d0.6", markdown);
    }

    [Fact]
    public void ARowWithoutAllPlannedSeedsIsPartial()
    {
        using var root = new TempDirectory();
        WriteRun(root.Path, Dense, 1, 0.990);
        WriteRun(root.Path, Dense, 3, 0.991);
        WriteRun(root.Path, Top5, 1, 0.992);
        WriteRun(root.Path, Top5, 2, 0.993);
        WriteRun(root.Path, Top5, 3, 0.994);
        WriteRun(root.Path, Top5, 4, 0.995); // a seed not planned (left by an earlier --seeds) is left out
        var rows = ReproductionReport.Collect(root.Path, [Dense, Top5], epochs: 3, plannedSeeds: [1, 2, 3]);
        Assert.True(rows[0].Partial);
        Assert.False(rows[1].Partial);
        string markdown = ReproductionReport.ToMarkdown(rows, "timing note");
        Assert.Contains("| dense | 2 of 3 | 3 |", markdown);
        Assert.Contains("| top5-d0.6 | 3 | 3 |", markdown);
        Assert.Equal([1UL, 2, 3], rows[1].Seeds);
        Assert.Contains("Partial: dense (fewer seeds or epochs than planned)", markdown);
    }

    [Fact]
    public void SeedsNotPlannedAreLeftOut()
    {
        using var root = new TempDirectory();
        foreach (ulong seed in new ulong[] { 1, 2, 3, 4 }) WriteRun(root.Path, Dense, seed, 0.99 + seed / 1000.0);
        WriteRun(root.Path, Top5, 6, 0.99);
        var rows = ReproductionReport.Collect(root.Path, [Dense, Top5], epochs: 3, plannedSeeds: [1, 2], headlineSeeds: [3]);
        Assert.Equal([1UL, 2, 3], rows[0].Seeds);
        Assert.Equal([0.991, 0.992, 0.993], rows[0].TestAccuracy);
        Assert.Empty(rows[1].Seeds);
    }

    [Fact]
    public void HeadlineRowsPlanTheirExtraSeeds()
    {
        using var root = new TempDirectory();
        var top8 = ReproductionGrid.All.Single(c => c.Name == "table2-top8-d0");
        foreach (ulong seed in new ulong[] { 1, 2, 3 })
        {
            WriteRun(root.Path, Dense, seed, 0.990);
            WriteRun(root.Path, top8, seed, 0.990);
        }
        var rows = ReproductionReport.Collect(root.Path, [Dense, top8], epochs: 3, plannedSeeds: [1, 2, 3], headlineSeeds: [4, 5]);
        Assert.Equal([1UL, 2, 3, 4, 5], rows[0].PlannedSeeds);
        Assert.True(rows[0].Partial);
        Assert.Equal([1UL, 2, 3], rows[1].PlannedSeeds);
        Assert.False(rows[1].Partial);
        Assert.Contains("| dense | 3 of 5 | 3 |", ReproductionReport.ToMarkdown(rows, "timing note"));
    }

    [Fact]
    public void ResultsJsonHasOneRowPerConfigurationWithThePapersFigures()
    {
        using var root = new TempDirectory();
        WriteRun(root.Path, Dense, 1, 0.990);
        var rows = ReproductionReport.Collect(root.Path, ReproductionGrid.All, epochs: 30, plannedSeeds: [1, 2, 3]);
        Assert.Equal(16, rows.Count);
        using var json = JsonDocument.Parse(ReproductionReport.ToJson(rows));
        var first = json.RootElement[0];
        Assert.Equal(2, first.GetProperty("table").GetInt32());
        Assert.Equal(JsonValueKind.Null, first.GetProperty("topk").ValueKind);
        Assert.Equal(0.9902, first.GetProperty("paper").GetProperty("test").GetDouble());
        Assert.Equal(0.99, first.GetProperty("test_accuracy")[0].GetDouble());
        var random = json.RootElement.EnumerateArray().Single(r => r.GetProperty("row").GetString() == "random5" && r.GetProperty("table").GetInt32() == 3);
        Assert.Equal("random", random.GetProperty("selection").GetString());
        Assert.True(random.GetProperty("batch_norm").GetBoolean());
        Assert.Equal(JsonValueKind.Null, random.GetProperty("paper").ValueKind);
        Assert.Equal(0, random.GetProperty("seeds").GetArrayLength());
        string markdown = ReproductionReport.ToMarkdown(rows, "timing note");
        Assert.Contains("| random5 | 0 of 3 | not started |", markdown);
        Assert.Contains("| dense | 1 of 3 | 3 of 30 (partial) |", markdown);
    }

    [Fact]
    public void StudentQuantilesAreTheTabulatedOnes()
    {
        Assert.Equal(12.706, SeedStatistics.StudentT975(1));
        Assert.Equal(2.776, SeedStatistics.StudentT975(4));
        Assert.Equal(2.042, SeedStatistics.StudentT975(30));
        Assert.Equal(2.0003, SeedStatistics.StudentT975(60), 3); // t(0.975, 60) = 2.000
        Assert.Equal(1.984, SeedStatistics.StudentT975(100), 3);
        Assert.Throws<ArgumentOutOfRangeException>(() => SeedStatistics.StudentT975(0));
    }
}
