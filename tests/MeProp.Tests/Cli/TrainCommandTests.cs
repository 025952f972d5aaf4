using System.Text.Json;
using MeProp.Training;
using MeProp.Tests.Data;

using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Cli;

/// <summary>
/// The `meprop train` command end to end on a tiny IDX data set (8x8 images): outputs, resume
/// exactness, and one-line errors. Console output is shared state, so these run one at a time.
/// </summary>
[Collection("Console")]
public class TrainCommandTests
{
    private static string[] Args(string data, string outDir, params string[] extra) =>
        ["train", "--data", data, "--out", outDir, "--dev-size", "12", "--batch-size", "7", "--threads", "2", "--seed", "3", .. extra];

    [Theory]
    [InlineData("--model", "mlp", "--hidden-size", "16")]
    [InlineData("--model", "paper-cnn", "--topk", "0.1", "--decay", "0.6")]
    [InlineData("--model", "paper-cnn", "--topk", "0.2", "--decay", "0.5", "--batch-norm", "--meprop-layers", "conv1,conv2,fc1")]
    [InlineData("--model", "paper-cnn", "--augment-crop", "2", "--augment-flip", "--normalize")]
    public void ResumeReproducesTheUninterruptedRun(params string[] model)
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string whole = Path.Combine(output.Path, "whole"), parts = Path.Combine(output.Path, "parts");
        Assert.Equal(0, Run(Args(data.Path, whole, [.. model, "--epochs", "3"])).Code);
        Assert.Equal(0, Run(Args(data.Path, parts, [.. model, "--epochs", "1"])).Code);
        var resumed = Run("train", "--resume", parts, "--epochs", "3", "--data", data.Path);
        Assert.True(resumed.Code == 0, resumed.Stderr);

        AssertSameRun(whole, parts, "after resume");
    }

    /// <summary>
    /// `--no-fused-update` trains the same bits as the default (Adam fused into the dense linear
    /// backward, batch 7 ≤ FusedLinearAdam.BatchLimit), and summary.json's config says which ran; a resumed
    /// run may switch it.
    /// </summary>
    [Fact]
    public void NoFusedUpdateGivesTheSameRunAndIsEchoed()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string fused = Path.Combine(output.Path, "fused"), plain = Path.Combine(output.Path, "plain");
        string[] model = ["--model", "paper-cnn", "--topk", "0.2", "--decay", "0.5", "--batch-norm"];
        Assert.Equal(0, Run(Args(data.Path, fused, [.. model, "--epochs", "2"])).Code);
        Assert.Equal(0, Run(Args(data.Path, plain, [.. model, "--epochs", "1", "--no-fused-update"])).Code);
        using (var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(plain, Trainer.SummaryFile))))
            Assert.False(summary.RootElement.GetProperty("config").GetProperty("fused_update").GetBoolean());
        var resumed = Run("train", "--resume", plain, "--epochs", "2", "--data", data.Path, "--no-fused-update");
        Assert.True(resumed.Code == 0, resumed.Stderr);
        using (var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(fused, Trainer.SummaryFile))))
            Assert.True(summary.RootElement.GetProperty("config").GetProperty("fused_update").GetBoolean());

        Assert.Equal(MetricsWithoutTimes(fused), MetricsWithoutTimes(plain));
        var a = SafeTensorsFile.Load(Path.Combine(fused, Trainer.LastCheckpoint));
        var b = SafeTensorsFile.Load(Path.Combine(plain, Trainer.LastCheckpoint));
        Assert.Equal(a.Names, b.Names);
        foreach (string name in a.Names) Assert.True(a.GetFloat32(name).Span.SequenceEqual(b.GetFloat32(name).Span), $"{name} differs with --no-fused-update");
    }

    [Fact]
    public void WritesSummaryMetricsAndCheckpointsThatEvalReads()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        var result = Run(Args(data.Path, output.Path, "--model", "mlp", "--hidden-size", "8", "--epochs", "2"));
        Assert.True(result.Code == 0, result.Stderr);
        using var summary = JsonDocument.Parse(File.ReadAllText(output.File(Trainer.SummaryFile)));
        var root = summary.RootElement;
        int best = root.GetProperty("best_epoch").GetInt32();
        Assert.InRange(best, 1, 2);
        Assert.Equal(2, root.GetProperty("config").GetProperty("epochs").GetInt32());
        Assert.Equal("mlp", root.GetProperty("config").GetProperty("model_options").GetProperty("model").GetString());
        var lines = File.ReadAllLines(output.File(Trainer.MetricsFile));
        Assert.Equal(2, lines.Length);
        using var bestLine = JsonDocument.Parse(lines[best - 1]);
        Assert.Equal(bestLine.RootElement.GetProperty("test_accuracy").GetDouble(), root.GetProperty("test_accuracy").GetDouble());
        Assert.Equal(bestLine.RootElement.GetProperty("dev_accuracy").GetDouble(), root.GetProperty("dev_accuracy").GetDouble());

        var eval = Run("eval", "--checkpoint", output.File(Trainer.BestCheckpoint), "--data", data.Path);
        Assert.Equal(0, eval.Code);
        Assert.Contains($"test accuracy {root.GetProperty("test_accuracy").GetDouble():F4}", eval.Stdout);
    }

    [Theory]
    [InlineData("--epochs", "-1")]
    [InlineData("--batch-size", "0")]
    [InlineData("--model", "resnet")]
    [InlineData("--topk", "1.5")]
    [InlineData("--decay", "1")]
    [InlineData("--selection", "sideways")]
    public void RejectsOptionsOutOfRangeBeforeAnyWork(string option, string value)
    {
        using var output = new TempDirectory();
        var result = Run("train", "--data", "/nonexistent-should-not-be-touched", "--out", output.Path, option, value);
        Assert.Equal(2, result.Code);
        Assert.StartsWith("error: ", result.Stderr);
        Assert.Empty(Directory.GetFiles(output.Path));
    }

    [Fact]
    public void CorruptDataFileIsOneLineErrorNamingTheFile()
    {
        using var data = TinyData();
        var path = data.File("train-labels-idx1-ubyte");
        var bytes = File.ReadAllBytes(path);
        bytes[3] = 0x99; // wrong magic number
        File.WriteAllBytes(path, bytes);
        var result = Run("train", "--data", data.Path, "--model", "mlp");
        Assert.Equal(1, result.Code);
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains("train-labels-idx1-ubyte", lines[0]);
    }

    [Fact]
    public void MePropLayerErrorsAreReported()
    {
        using var data = TinyData();
        var outputLayer = Run("train", "--data", data.Path, "--topk", "0.1", "--meprop-layers", "fc2");
        Assert.Equal(1, outputLayer.Code);
        Assert.Contains("output layer", outputLayer.Stderr);
        var unknown = Run("train", "--data", data.Path, "--topk", "0.1", "--meprop-layers", "conv9");
        Assert.Equal(1, unknown.Code);
        Assert.Contains("conv9", unknown.Stderr);
        var decayWithoutTopk = Run("train", "--data", data.Path, "--decay", "0.6");
        Assert.Equal(1, decayWithoutTopk.Code);
        Assert.Contains("--topk", decayWithoutTopk.Stderr);
    }

    [Fact]
    public void ReproduceTrainsTheGridResumesAndSkipsFinishedRuns()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        using var checkpoints = new TempDirectory();
        string[] Args(int epochs) => ["reproduce", "--data", data.Path, "--out", output.Path, "--checkpoints", checkpoints.Path,
            "--epochs", epochs.ToString(), "--tables", "2", "--rows", "dense,top5-d0.6,random5", "--seeds", "1", "--headline-seeds", "2",
            "--dev-size", "12", "--jobs", "2", "--threads", "1"];
        var first = Run(Args(1));
        Assert.True(first.Code == 0, first.Stderr);
        string[] runs = ["table2-dense/seed-1", "table2-top5-d0.6/seed-1", "table2-random5/seed-1", "table2-dense/seed-2", "table2-top5-d0.6/seed-2"];
        foreach (string run in runs)
        {
            Assert.True(File.Exists(Path.Combine(output.Path, "runs", run, Trainer.SummaryFile)), $"{run} has no summary");
            Assert.True(File.Exists(Path.Combine(checkpoints.Path, run, Trainer.LastCheckpoint)), $"{run} has no checkpoint");
        }
        Assert.Empty(Directory.GetFiles(output.Path, "*.safetensors", SearchOption.AllDirectories));
        using (var json = JsonDocument.Parse(File.ReadAllText(output.File("results.json"))))
            Assert.Equal(3, json.RootElement.GetArrayLength());
        Assert.Contains("| random5 | 1 | 1 |", File.ReadAllText(output.File("results.md")));

        var again = Run(Args(1));
        Assert.True(again.Code == 0, again.Stderr);
        Assert.Contains("5 of 5 runs finished earlier", again.Stdout);

        // Two epochs: four runs resume from their checkpoints; the fifth lost its checkpoint and starts
        // again, writing the same first epoch as before.
        string lost = Path.Combine(output.Path, "runs", runs[2]);
        var before = MetricsWithoutTimes(lost);
        Directory.Delete(Path.Combine(checkpoints.Path, runs[2]), recursive: true);
        var longer = Run(Args(2));
        Assert.True(longer.Code == 0, longer.Stderr);
        Assert.Equal(4, longer.Stdout.Split('\n').Count(line => line.Contains("resuming after epoch 1")));
        var after = MetricsWithoutTimes(lost);
        Assert.Equal(2, after.Count);
        Assert.Equal(before[0], after[0]);
    }

    private const string TinyResidualNetwork = """
        {"input": [1, 8, 8], "classes": 10, "layers": [
          {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
          {"type": "residual", "layers": [
              {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
              {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}],
            "shortcut": [{"type": "conv2d", "out_channels": 8, "kernel_size": 1, "stride": 2}, {"type": "batchnorm"}]},
          {"type": "relu"}, {"type": "globalavgpool"}, {"type": "dropout", "p": 0.2}, {"type": "linear", "out_features": 10}]}
        """;

    [Theory]
    [InlineData]
    [InlineData("--topk", "0.2", "--decay", "0.6", "--meprop-layers", "conv1,res1.conv2,res1.shortcut.conv1")]
    public void TrainsANetworkFileResumesItAndEvalRebuildsIt(params string[] meProp)
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string network = output.File("tiny-resnet.json");
        File.WriteAllText(network, TinyResidualNetwork);
        string whole = output.File("whole"), parts = output.File("parts");
        var trained = Run(Args(data.Path, whole, ["--model", network, "--epochs", "2", .. meProp]));
        Assert.True(trained.Code == 0, trained.Stderr);
        Assert.Equal(0, Run(Args(data.Path, parts, ["--model", network, "--epochs", "1", .. meProp])).Code);
        var resumed = Run("train", "--resume", parts, "--epochs", "2", "--data", data.Path);
        Assert.True(resumed.Code == 0, resumed.Stderr);
        Assert.Equal(MetricsWithoutTimes(whole), MetricsWithoutTimes(parts));
        if (meProp.Length > 0)
        {
            using var line = JsonDocument.Parse(File.ReadAllLines(Path.Combine(whole, Trainer.MetricsFile))[0]);
            Assert.Equal(["conv1", "res1.conv2", "res1.shortcut.conv1"], line.RootElement.GetProperty("kept_fraction").EnumerateObject().Select(p => p.Name).Order());
        }

        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(whole, Trainer.SummaryFile)));
        double test = summary.RootElement.GetProperty("test_accuracy").GetDouble();
        File.Delete(network); // eval rebuilds the network from the checkpoint's own description
        var eval = Run("eval", "--checkpoint", whole, "--data", data.Path);
        Assert.True(eval.Code == 0, eval.Stderr);
        Assert.Contains($"test accuracy {test:F4}", eval.Stdout);
    }

    [Fact]
    public void ResumeAndEvalReadTheRunsOwnDataAndRefuseOtherImages()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string whole = output.File("whole"), parts = output.File("parts");
        Assert.Equal(0, Run(Args(data.Path, whole, "--model", "mlp", "--hidden-size", "8", "--epochs", "2")).Code);
        Assert.Equal(0, Run(Args(data.Path, parts, "--model", "mlp", "--hidden-size", "8", "--epochs", "1")).Code);
        using (var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(parts, Trainer.SummaryFile))))
        {
            var recorded = summary.RootElement.GetProperty("config").GetProperty("data");
            Assert.Equal(Path.GetFullPath(data.Path), recorded.GetProperty("directory").GetString());
            Assert.Matches("^[0-9a-f]{64}$", recorded.GetProperty("fingerprint").GetString());
        }

        // Other images under --data are refused, by what they hold, not by their path.
        using (var other = new TempDirectory())
        {
            IdxTestFiles.WriteMnistLayout(other.Path, trainCount: 62, testCount: 23, height: 8, width: 8);
            var refused = Run("train", "--resume", parts, "--epochs", "2", "--data", other.Path);
            Assert.NotEqual(0, refused.Code);
            Assert.Contains("not the ones the run was trained on", refused.Stderr);
        }

        // Without --data the run resumes on its own images, exactly as if it had not stopped.
        var resumed = Run("train", "--resume", parts, "--epochs", "2");
        Assert.True(resumed.Code == 0, resumed.Stderr);
        Assert.Equal(MetricsWithoutTimes(whole), MetricsWithoutTimes(parts));
        using (var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(whole, Trainer.SummaryFile))))
        {
            double test = summary.RootElement.GetProperty("test_accuracy").GetDouble();
            var eval = Run("eval", "--checkpoint", whole);
            Assert.True(eval.Code == 0, eval.Stderr);
            Assert.Contains($"test accuracy {test:F4}", eval.Stdout);
        }

        // The same images elsewhere are accepted, and the run remembers where; a directory that is gone is an error.
        using (var moved = new TempDirectory())
        {
            IdxTestFiles.WriteMnistLayout(moved.Path, trainCount: 61, testCount: 23, height: 8, width: 8);
            var extended = Run("train", "--resume", parts, "--epochs", "3", "--data", moved.Path);
            Assert.True(extended.Code == 0, extended.Stderr);
            Assert.Equal(Path.GetFullPath(moved.Path), Checkpoint.ReadOptions(Path.Combine(parts, Trainer.LastCheckpoint)).Data!.Directory);
        }
        var gone = Run("train", "--resume", parts, "--epochs", "4");
        Assert.NotEqual(0, gone.Code);
        Assert.Contains("does not exist; give the data with --data", gone.Stderr);
    }

    [Fact]
    public void EvalRecomputesBatchNormStatisticsFromTheRunsTrainingImages()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string network = output.File("tiny-resnet.json");
        File.WriteAllText(network, TinyResidualNetwork);
        string run = output.File("run");
        Assert.Equal(0, Run(Args(data.Path, run, "--model", network, "--epochs", "1")).Code);

        var eval = Run("eval", "--checkpoint", run, "--data", data.Path, "--threads", "1", "--recompute-batch-norm");
        Assert.True(eval.Code == 0, eval.Stderr);
        // The same as the library gives: the 49 images after the 12 dev ones, in the run's batches of 7.
        string path = Path.Combine(run, Trainer.BestCheckpoint);
        var options = Checkpoint.ReadOptions(path);
        var images = MeProp.Data.DataDirectory.Load(data.Path);
        using var compute = new MeProp.Layers.ComputeContext(1);
        var model = MeProp.Models.ModelBuilder.Build(options.ModelOptions, 1, 8, 8, 10, compute, options.Seed);
        Checkpoint.Load(path, model, optimizer: null);
        double before = Trainer.Evaluate(model, images.Test, options.EvalBatchSize);
        Assert.Equal(4, BatchNormStatistics.Recompute(model, images.Training.Slice(12, 49), 7));
        double after = Trainer.Evaluate(model, images.Test, options.EvalBatchSize);
        Assert.Contains($"test accuracy {before:F4} (", eval.Stdout);
        Assert.Contains($"test accuracy {after:F4} after recomputing 4 batch norm layers' statistics from 49 training images", eval.Stdout);

        string mlp = output.File("mlp");
        Assert.Equal(0, Run(Args(data.Path, mlp, "--model", "mlp", "--hidden-size", "8", "--epochs", "1")).Code);
        var refused = Run("eval", "--checkpoint", mlp, "--data", data.Path, "--recompute-batch-norm");
        Assert.NotEqual(0, refused.Code);
        Assert.Contains("no batch norm layer", refused.Stderr);
    }

    [Fact]
    public void SummaryPrintsEveryLayerAndTheTotals()
    {
        using var output = new TempDirectory();
        string network = output.File("tiny-resnet.json");
        File.WriteAllText(network, TinyResidualNetwork);
        var result = Run("summary", "--model", network);
        Assert.True(result.Code == 0, result.Stderr);
        Assert.Contains("res1.shortcut.conv1", result.Stdout);
        Assert.Contains("total", result.Stdout);
        var paper = Run("summary");
        Assert.Contains("3,274,634", paper.Stdout);
        File.WriteAllText(network, TinyResidualNetwork.Replace("\"kernel_size\": 1", "\"kernel_size\": 1, \"out_features\": 3"));
        var bad = Run("summary", "--model", network);
        Assert.Equal(1, bad.Code);
        Assert.Contains("res1.shortcut.conv1: 'out_features' does not apply to conv2d", bad.Stderr);
    }

    [Fact]
    public void ResumeOfAMissingRunIsAnError()
    {
        using var output = new TempDirectory();
        var result = Run("train", "--resume", output.Path);
        Assert.Equal(1, result.Code);
        Assert.Contains(Trainer.LastCheckpoint, result.Stderr);
    }
}

[CollectionDefinition("Console", DisableParallelization = true)]
public class ConsoleCollection;
