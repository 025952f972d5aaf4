using System.Text.Json;
using MeProp.Data;
using MeProp.Tests.Data;
using MeProp.Training;
using StbImageWriteSharp;
using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Cli;

/// <summary>Input normalisation recorded in the network, and `meprop predict` on files and on a data directory.</summary>
[Collection("Console")]
public class PredictAndNormalizeTests
{
    private static string[] Train(string data, string outDir, params string[] extra) =>
        ["train", "--data", data, "--out", outDir, "--model", "mlp", "--hidden-size", "8", "--dev-size", "12", "--batch-size", "7", "--threads", "1", "--epochs", "1", .. extra];

    [Fact]
    public void NormalizeRecordsTheTrainingSplitsStatisticsAndEvalAndPredictApplyThem()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        var trained = Run(Train(data.Path, output.Path, "--normalize"));
        Assert.True(trained.Code == 0, trained.Stderr);

        var split = DatasetSplit.Create(MnistFiles.Load(data.Path).Training, 12);
        var (mean, std) = split.Train.ChannelStatistics();
        using var summary = JsonDocument.Parse(File.ReadAllText(output.File(Trainer.SummaryFile)));
        var recorded = summary.RootElement.GetProperty("config").GetProperty("model_options").GetProperty("normalization");
        Assert.Equal(mean[0], recorded.GetProperty("mean")[0].GetSingle());
        Assert.Equal(std[0], recorded.GetProperty("std")[0].GetSingle());

        double test = summary.RootElement.GetProperty("test_accuracy").GetDouble();
        var eval = Run("eval", "--checkpoint", output.Path, "--data", data.Path);
        Assert.Contains($"test accuracy {test:F4}", eval.Stdout);

        var predicted = Run("predict", "--checkpoint", output.Path, "--data", data.Path, "--count", "4", "--json");
        Assert.True(predicted.Code == 0, predicted.Stderr);
        var lines = predicted.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        using var first = JsonDocument.Parse(lines[0]);
        Assert.Equal("9", first.RootElement.GetProperty("label").GetString()); // the tiny set's first test label
        var probabilities = first.RootElement.GetProperty("top").EnumerateArray().Select(t => t.GetProperty("probability").GetDouble()).ToList();
        Assert.Equal(3, probabilities.Count);
        Assert.True(probabilities.SequenceEqual(probabilities.OrderDescending()));
    }

    [Fact]
    public void PredictReadsImageFilesOfTheNetworksSize()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string network = output.File("net.json");
        File.WriteAllText(network, """{"input": [1, 8, 8], "classes": 10, "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]}""");
        string run = output.File("run");
        Assert.Equal(0, Run("train", "--data", data.Path, "--out", run, "--model", network, "--dev-size", "12", "--threads", "1", "--mean", "0.5", "--std", "0.25").Code);

        string good = output.File("digit.png"), bad = output.File("big.png");
        using (var stream = File.Create(good)) new ImageWriter().WritePng(Enumerable.Range(0, 64).Select(i => (byte)(4 * i)).ToArray(), 8, 8, ColorComponents.Grey, stream);
        using (var stream = File.Create(bad)) new ImageWriter().WritePng(new byte[100], 10, 10, ColorComponents.Grey, stream);
        var result = Run("predict", "--checkpoint", run, good, "--top", "2");
        Assert.True(result.Code == 0, result.Stderr);
        Assert.StartsWith(good + ": ", result.Stdout);
        Assert.Equal(2, result.Stdout.Split(", ").Length);

        Assert.Contains("big.png: 10x10 pixels, the network takes 8x8", AssertOneLineError(Run("predict", "--checkpoint", run, bad), 1));
        Assert.Contains("--mean and --std need one value per channel", AssertOneLineError(Run(Train(data.Path, output.File("r2"), "--mean", "0.5,0.5", "--std", "0.2,0.2")), 1));
        Assert.Contains("image files or --data", AssertOneLineError(Run("predict", "--checkpoint", run), 1));

        // Test images labelled with more classes than the network has.
        using var wide = new TempDirectory();
        IdxTestFiles.WriteMnistLayout(wide.Path, trainCount: 61, testCount: 23, height: 8, width: 8);
        File.WriteAllBytes(Path.Combine(wide.Path, "train-labels-idx1-ubyte"), IdxTestFiles.Labels(Enumerable.Range(0, 61).Select(n => (byte)(n % 12)).ToArray()));
        File.WriteAllBytes(Path.Combine(wide.Path, "t10k-labels-idx1-ubyte"), IdxTestFiles.Labels(Enumerable.Range(0, 23).Select(n => (byte)(n % 12)).ToArray()));
        Assert.Contains("labels are of 12 classes, the network's outputs of 10", AssertOneLineError(Run("predict", "--checkpoint", run, "--data", wide.Path, "--count", "23"), 1));
    }

    [Fact]
    public void InputNormalisationIsRefusedWhereItCannotApplyOnce()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string own = output.File("own.json"), flat = output.File("flat.json");
        File.WriteAllText(own, """{"input": [1, 8, 8], "classes": 10, "layers": [{"type": "normalize", "mean": [0.5], "std": [0.25]}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]}""");
        File.WriteAllText(flat, """{"input": [64], "classes": 10, "layers": [{"type": "linear", "out_features": 10}]}""");
        Assert.Contains("twice", AssertOneLineError(Run("train", "--data", data.Path, "--out", output.File("a"), "--model", own, "--dev-size", "12", "--threads", "1", "--normalize"), 1));
        Assert.Contains("flat.json: --normalize (or --mean and --std) needs image input [C, H, W]", AssertOneLineError(Run("train", "--data", data.Path, "--out", output.File("b"), "--model", flat, "--dev-size", "12", "--threads", "1", "--normalize"), 1));
        Assert.Equal(0, Run("train", "--data", data.Path, "--out", output.File("c"), "--model", own, "--dev-size", "12", "--threads", "1").Code);
    }
}

/// <summary>`meprop data export-images`: a data set written as PNG files loads back identical, in order.</summary>
[Collection("Console")]
public class ExportImagesTests
{
    [Fact]
    public void AnExportedImageFolderLoadsBackIdentical()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string folder = output.File("images");
        var result = Run("data", "export-images", "--data", data.Path, "--out", folder);
        Assert.True(result.Code == 0, result.Stderr);
        var original = MeProp.Data.DataDirectory.Load(data.Path);
        var exported = MeProp.Data.DataDirectory.Load(folder);
        Assert.Equal("image-folder", exported.Format);
        foreach (var (a, b) in new[] { (original.Training, exported.Training), (original.Test, exported.Test) })
        {
            Assert.Equal(a.Labels.ToArray(), b.Labels.ToArray());
            Assert.Equal(a.Images.ToArray(), b.Images.ToArray());
        }
        Assert.Contains("not empty", AssertOneLineError(Run("data", "export-images", "--data", data.Path, "--out", folder), 1));
    }
}
