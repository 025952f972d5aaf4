using System.Buffers.Binary;
using System.Text.Json;
using System.Xml.Linq;
using MeProp.Cli.Plotting;
using MeProp.Cli.Reproduction;
using MeProp.Training;
using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Cli;

/// <summary>
/// Training curves: `meprop plot` on synthetic run directories writes real PNG and SVG charts and fails
/// with one line on a directory without metrics; the reproduction's per-table charts average each epoch
/// over the seeds that have it.
/// </summary>
[Collection("Console")]
public class PlotTests
{
    private static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>A run directory whose metrics.jsonl has one line per entry of <paramref name="devAccuracy"/>, the loss falling from <paramref name="firstLoss"/>.</summary>
    private static string WriteRun(string directory, double firstLoss, params double?[] devAccuracy)
    {
        Directory.CreateDirectory(directory);
        var lines = devAccuracy.Select((dev, i) => JsonSerializer.Serialize(new EpochMetrics
        {
            Epoch = i + 1,
            TrainLoss = firstLoss / (i + 1),
            DevAccuracy = dev,
            TestAccuracy = 0.99,
        }, Json.Line));
        File.WriteAllLines(Path.Combine(directory, Trainer.MetricsFile), lines);
        return directory;
    }

    private static RunRecord Record(double firstLoss, params double?[] devAccuracy)
    {
        using var directory = new TempDirectory();
        return RunRecord.Read(WriteRun(directory.Path, firstLoss, devAccuracy));
    }

    /// <summary>A PNG of the chart's size (1000 x 500 in its header) with more in it than a blank image.</summary>
    private static void AssertChartPng(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(PngSignature, bytes[..8]);
        Assert.Equal(1000, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
        Assert.Equal(500, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
        Assert.InRange(bytes.Length, 5_000, 2_000_000);
    }

    /// <summary>An SVG document; its text elements' contents (none where the machine has no fonts).</summary>
    private static List<string> ChartSvgTexts(string path)
    {
        var document = XDocument.Load(path);
        Assert.Equal("svg", document.Root!.Name.LocalName);
        return document.Descendants().Where(e => e.Name.LocalName == "text").Select(e => e.Value.Trim()).ToList();
    }

    [Fact]
    public void PlotWritesPngAndSvgOfDevAccuracyAndTrainingLoss()
    {
        using var root = new TempDirectory();
        string first = WriteRun(root.File("first"), 0.3, 0.980, 0.985, 0.990);
        // A run still in progress, and one epoch without a dev accuracy (a run without a dev split has none).
        string second = WriteRun(root.File("second"), 0.2, 0.982, null);
        string charts = root.File("charts");

        var result = Run("plot", first, second, "--labels", "alpha-run,beta-run", "--out", charts);

        Assert.True(result.Code == 0, result.Stderr);
        foreach (string name in new[] { "dev-accuracy", "train-loss" })
        {
            AssertChartPng(Path.Combine(charts, name + ".png"));
            var texts = ChartSvgTexts(Path.Combine(charts, name + ".svg"));
            Assert.Contains(Path.Combine(charts, name + ".svg"), result.Stdout);
            if (TrainingCurves.HasFonts)
            {
                Assert.Contains("alpha-run", texts);
                Assert.Contains("beta-run", texts);
                Assert.Contains("epoch", texts);
            }
        }
    }

    [Fact]
    public void PlotLabelsRunsByDirectoryNameWithoutLabels()
    {
        using var root = new TempDirectory();
        string run = WriteRun(root.File("my-run"), 0.3, 0.98, 0.99);

        var result = Run("plot", run, "--out", root.Path);

        Assert.True(result.Code == 0, result.Stderr);
        if (TrainingCurves.HasFonts) Assert.Contains("my-run", ChartSvgTexts(root.File("dev-accuracy.svg")));
    }

    [Fact]
    public void PlotOfADirectoryWithoutMetricsFailsWithOneLineNamingIt()
    {
        using var root = new TempDirectory();
        string run = WriteRun(root.File("run"), 0.3, 0.98);
        string empty = root.File("empty");
        Directory.CreateDirectory(empty);

        string error = AssertOneLineError(Run("plot", run, empty, "--out", root.File("charts")), 1);

        Assert.Contains(empty, error);
        Assert.Contains(Trainer.MetricsFile, error);
        Assert.False(Directory.Exists(root.File("charts")));
    }

    [Fact]
    public void PlotRefusesLabelsThatDoNotMatchTheRuns()
    {
        using var root = new TempDirectory();
        string run = WriteRun(root.File("run"), 0.3, 0.98);

        string error = AssertOneLineError(Run("plot", run, "--labels", "a,b", "--out", root.Path), 1);

        Assert.Contains("--labels", error);
    }

    [Fact]
    public void CurveAveragesEachEpochOverTheSeedsThatHaveIt()
    {
        var seeds = new[]
        {
            Record(0.4, 0.97, 0.98, 0.99),
            Record(0.2, 0.95, 0.96, 0.97),
            Record(0.6, 0.90),
        };

        var dev = Curve.Summarise("row", seeds, Metric.DevAccuracy);
        Assert.Equal([1.0, 2, 3], dev.Epochs);
        Assert.Equal(3, dev.Runs);
        // Epoch 1 over three seeds, epochs 2 and 3 over the two that have them; in percent.
        Assert.Equal([94.0, 97.0, 98.0], dev.Mean.Select(v => Math.Round(v, 9)));
        Assert.Equal([90.0, 96.0, 97.0], dev.Low.Select(v => Math.Round(v, 9)));
        Assert.Equal([97.0, 98.0, 99.0], dev.High.Select(v => Math.Round(v, 9)));

        var loss = Curve.Summarise("row", seeds, Metric.TrainLoss);
        Assert.Equal(0.4, loss.Mean[0], 12);
        Assert.Equal(0.15, loss.Mean[1], 12);
        Assert.Equal(0.2 / 3, loss.Low[2], 12);
    }

    [Fact]
    public void ALegendSaysHowManySeedsTheMeanHoldsPastTheShortestRun()
    {
        Assert.Equal("1 seed", ReproductionCurves.SeedsText([Record(0.4, 0.97)]));
        Assert.Equal("2 seeds", ReproductionCurves.SeedsText([Record(0.4, 0.97, 0.98), Record(0.2, 0.95, 0.96)]));
        Assert.Equal("3 seeds, 2 past epoch 1", ReproductionCurves.SeedsText([Record(0.4, 0.97, 0.98, 0.99), Record(0.2, 0.95, 0.96), Record(0.6, 0.90)]));
    }

    [Fact]
    public void CurveLeavesOutEpochsWithoutAValue()
    {
        var dev = Curve.Summarise("run", [Record(0.3, null, 0.98, null)], Metric.DevAccuracy);

        Assert.Equal([2.0], dev.Epochs);
        Assert.Equal(98.0, dev.Mean[0], 9);
    }

    [Fact]
    public void ReproductionChartsArePerTableFromTheSeedsThereAre()
    {
        using var results = new TempDirectory();
        string runsRoot = Path.Combine(results.Path, "runs");
        var dense = ReproductionGrid.All.Single(c => c.Name == "table2-dense");
        var top5 = ReproductionGrid.All.Single(c => c.Name == "table2-top5-d0.6");
        WriteRun(Path.Combine(runsRoot, new ReproductionRun(dense, 1).RelativePath), 0.3, 0.980, 0.985, 0.990);
        // Seed 2 is still at its second epoch.
        WriteRun(Path.Combine(runsRoot, new ReproductionRun(dense, 2).RelativePath), 0.25, 0.982, 0.986);
        WriteRun(Path.Combine(runsRoot, new ReproductionRun(top5, 1).RelativePath), 0.35, 0.978, 0.988, 0.991);
        // The whole grid, as reproduce passes it: Table 3 and the other rows have no runs.
        var configs = ReproductionGrid.All;
        var rows = ReproductionReport.Collect(runsRoot, configs, epochs: 3, plannedSeeds: [1, 2]);

        ReproductionCurves.Write(results.Path, runsRoot, configs, rows);

        foreach (string name in new[] { "table2-dev-accuracy", "table2-train-loss" })
        {
            AssertChartPng(Path.Combine(results.Path, name + ".png"));
            var texts = ChartSvgTexts(Path.Combine(results.Path, name + ".svg"));
            if (TrainingCurves.HasFonts)
            {
                Assert.Contains("dense (2 seeds, 1 past epoch 2)", texts);
                Assert.Contains("top5-d0.6 (1 seed)", texts);
                Assert.DoesNotContain(texts, t => t.StartsWith("top8"));
            }
        }
        Assert.Empty(Directory.GetFiles(results.Path, "table3-*"));
    }
}
