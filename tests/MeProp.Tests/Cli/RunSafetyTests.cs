using System.Text.Json;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Tests.Data;
using MeProp.Training;
using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Cli;

/// <summary>
/// The hostile cases of a run's life: an --out that holds a run, a crash between an epoch's metrics and
/// its checkpoint, torn or corrupt files, numbers that do not parse, labels out of range, divergence,
/// and options given with --resume. Each fails with one line and a non-zero exit, before any long work
/// where it can be known up front, and nothing is lost.
/// </summary>
[Collection("Console")]
public class RunSafetyTests
{
    private static string[] Train(string data, string outDir, params string[] extra) =>
        ["train", "--data", data, "--out", outDir, "--model", "mlp", "--hidden-size", "8", "--dev-size", "12", "--batch-size", "7", "--threads", "1", .. extra];

    [Fact]
    public void ANewRunRefusesADirectoryHoldingARunAndOverwriteMovesItAside()
    {
        using var data = TinyData();
        using var root = new TempDirectory();
        string run = root.File("r");
        Assert.Equal(0, Run(Train(data.Path, run, "--epochs", "2")).Code);
        var before = File.ReadAllText(Path.Combine(run, Trainer.MetricsFile));

        string error = AssertOneLineError(Run(Train(data.Path, run, "--epochs", "1", "--seed", "2")), 1);
        Assert.Contains("--resume", error);
        Assert.Contains("--overwrite", error);
        Assert.Equal(before, File.ReadAllText(Path.Combine(run, Trainer.MetricsFile)));

        var overwritten = Run(Train(data.Path, run, "--epochs", "1", "--seed", "2", "--overwrite"));
        Assert.True(overwritten.Code == 0, overwritten.Stderr);
        Assert.Contains("r.old-1", overwritten.Stdout);
        Assert.Equal(before, File.ReadAllText(Path.Combine(run + ".old-1", Trainer.MetricsFile)));
        Assert.Single(File.ReadAllLines(Path.Combine(run, Trainer.MetricsFile)));
    }

    [Fact]
    public void ASecondProcessCannotTrainIntoAHeldDirectory()
    {
        using var root = new TempDirectory();
        using var held = RunDirectory.Claim(root.File("r"), RunDirectoryMode.Resume);
        var error = Assert.Throws<RunDirectoryInUseException>(() => RunDirectory.Claim(root.File("r"), RunDirectoryMode.Resume));
        Assert.Contains("another process", error.Message);
    }

    [Theory]
    [InlineData("--decay-shape is the shape of the running average", "--topk", "0.5", "--decay-shape", "channel-position")]
    [InlineData("--momentum is SGD's; adam does not use it", "--momentum", "0.5")]
    public void OptionsThatWouldBeIgnoredAreRefused(string expected, params string[] extra)
    {
        using var data = TinyData();
        using var root = new TempDirectory();
        Assert.Contains(expected, AssertOneLineError(Run(Train(data.Path, root.File("r"), extra)), 1));
        Assert.Equal(0, Run(Train(data.Path, root.File("sgd"), "--optimizer", "sgd", "--momentum", "0.5")).Code);
    }

    [Fact]
    public void ResumeOfRandomSelectionEqualsTheUninterruptedRun()
    {
        using var data = TinyData();
        using var root = new TempDirectory();
        string whole = root.File("whole"), parts = root.File("parts");
        string[] random = ["--topk", "0.5", "--selection", "random", "--meprop-layers", "fc1"];
        Assert.Equal(0, Run(Train(data.Path, whole, [.. random, "--epochs", "3"])).Code);
        Assert.Equal(0, Run(Train(data.Path, parts, [.. random, "--epochs", "1"])).Code);
        var resumed = Run("train", "--resume", parts, "--epochs", "3", "--data", data.Path);
        Assert.True(resumed.Code == 0, resumed.Stderr);
        AssertSameRun(whole, parts, "after resume");
        Assert.Equal(SafeTensorsFile.Load(Path.Combine(whole, Trainer.LastCheckpoint)).Metadata["fc1.meprop.rng"],
                     SafeTensorsFile.Load(Path.Combine(parts, Trainer.LastCheckpoint)).Metadata["fc1.meprop.rng"]);
    }

    [Fact]
    public void ResumeOfAnSgdRunEqualsTheUninterruptedRun()
    {
        // SGD's momentum buffers and step count come back from the checkpoint as Adam's moments do.
        using var data = TinyData();
        using var root = new TempDirectory();
        string whole = root.File("whole"), parts = root.File("parts");
        string[] sgd = ["--optimizer", "sgd", "--momentum", "0.8", "--lr", "0.05"];
        Assert.Equal(0, Run(Train(data.Path, whole, [.. sgd, "--epochs", "3"])).Code);
        Assert.Equal(0, Run(Train(data.Path, parts, [.. sgd, "--epochs", "1"])).Code);
        var resumed = Run("train", "--resume", parts, "--epochs", "3", "--data", data.Path);
        Assert.True(resumed.Code == 0, resumed.Stderr);
        AssertSameRun(whole, parts, "after resume");
        Assert.Contains(SafeTensorsFile.Load(Path.Combine(parts, Trainer.LastCheckpoint)).Names, n => n.EndsWith(".momentum_buffer"));
    }

    [Fact]
    public void ResumingAFinishedRunWithoutItsSummaryWritesIt()
    {
        using var data = TinyData();
        using var root = new TempDirectory();
        string run = root.File("r"), summary = Path.Combine(run, Trainer.SummaryFile);
        Assert.Equal(0, Run(Train(data.Path, run, "--epochs", "2")).Code);
        string written = File.ReadAllText(summary);
        File.Delete(summary);
        var resumed = Run("train", "--resume", run, "--data", data.Path);
        Assert.True(resumed.Code == 0, resumed.Stderr);
        Assert.Contains("nothing to train", resumed.Stdout);
        Assert.Equal(written, File.ReadAllText(summary));
        Assert.Equal(2, File.ReadAllLines(Path.Combine(run, Trainer.MetricsFile)).Length);
    }

    [Fact]
    public void AnAtomicWriteThatFailsLeavesNoTemporary()
    {
        using var root = new TempDirectory();
        string target = root.File("summary.json");
        AtomicFile.WriteAllText(target, "old");
        Directory.CreateDirectory(root.File("taken"));
        Assert.ThrowsAny<IOException>(() => AtomicFile.WriteAllText(root.File("taken"), "new"));
        AtomicFile.WriteAllText(target, "new");
        Assert.Equal("new", File.ReadAllText(target));
        Assert.Equal(["summary.json", "taken"], Directory.EnumerateFileSystemEntries(root.Path).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void OverwriteDoesNotMoveADirectoryAnotherProcessHolds()
    {
        using var root = new TempDirectory();
        string run = root.File("r");
        using var held = RunDirectory.Claim(run, RunDirectoryMode.New);
        File.WriteAllText(Path.Combine(run, Trainer.MetricsFile), "{}\n");
        var error = Assert.Throws<RunDirectoryInUseException>(() => RunDirectory.Claim(run, RunDirectoryMode.Overwrite));
        Assert.Contains("another process", error.Message);
        Assert.True(File.Exists(Path.Combine(run, Trainer.MetricsFile)));
        Assert.False(Directory.Exists(run + ".old-1"));
    }

    [Fact]
    public void ACrashBetweenMetricsAndCheckpointLosesNoEpoch()
    {
        using var data = TinyData();
        using var root = new TempDirectory();
        var mnist = MnistFiles.Load(data.Path);
        var split = DatasetSplit.Create(mnist.Training, 12);
        var options = new TrainOptions { ModelOptions = new() { Model = "mlp", HiddenSize = 8 }, Epochs = 3, BatchSize = 7, Threads = 1, DevSize = 12 };
        string whole = root.File("whole"), crashed = root.File("crashed");
        using (var compute = new ComputeContext(1)) new Trainer(options, compute, split, mnist.Test, whole).Run();

        using (var compute = new ComputeContext(1))
        {
            var trainer = new Trainer(options, compute, split, mnist.Test, crashed);
            trainer.MetricsWritten = epoch => { if (epoch == 2) throw new IOException("injected crash"); };
            Assert.Throws<IOException>(() => trainer.Run());
        }
        Assert.Equal(2, File.ReadAllLines(Path.Combine(crashed, Trainer.MetricsFile)).Length);
        using (var compute = new ComputeContext(1))
        {
            var trainer = new Trainer(options, compute, split, mnist.Test, crashed);
            trainer.Resume(Path.Combine(crashed, Trainer.LastCheckpoint));
            Assert.Equal(1, trainer.Progress.EpochsCompleted);
            trainer.Run();
        }
        Assert.Equal(MetricsWithoutTimes(whole), MetricsWithoutTimes(crashed));
    }

    [Fact]
    public void ResumeRepairsATornLastMetricsLineAndRemovesLeftoverTemporaryFiles()
    {
        using var data = TinyData();
        using var root = new TempDirectory();
        string whole = root.File("whole"), torn = root.File("torn");
        Assert.Equal(0, Run(Train(data.Path, whole, "--epochs", "2")).Code);
        Assert.Equal(0, Run(Train(data.Path, torn, "--epochs", "1")).Code);
        string metrics = Path.Combine(torn, Trainer.MetricsFile);
        string line = File.ReadAllLines(metrics)[0];
        File.AppendAllText(metrics, line[..(line.Length / 2)]);
        string leftover = AtomicFile.TemporaryPath(Path.Combine(torn, Trainer.LastCheckpoint), Guid.NewGuid().ToString("N"));
        File.WriteAllBytes(leftover, new byte[1000]);

        var resumed = Run("train", "--resume", torn, "--epochs", "2", "--data", data.Path);
        Assert.True(resumed.Code == 0, resumed.Stderr);
        Assert.Equal(MetricsWithoutTimes(whole), MetricsWithoutTimes(torn));
        Assert.False(File.Exists(leftover));
    }

    [Theory]
    [InlineData("--epochs", "abc")]
    [InlineData("--epochs", "99999999999")]
    [InlineData("--epochs", "0")]
    [InlineData("--lr", "inf")]
    [InlineData("--lr", "Infinity")]
    [InlineData("--threads", "1000")]
    [InlineData("--meprop-layers", "")]
    [InlineData("--seed", "-1")]
    public void BadNumbersAreOneLineParseErrors(string option, string value)
    {
        using var output = new TempDirectory();
        string[] topk = option == "--meprop-layers" ? ["--topk", "0.1"] : [];
        string error = AssertOneLineError(Run(["train", "--data", "/nonexistent-should-not-be-touched", "--out", output.Path, .. topk, option, value]), 2);
        Assert.Contains(option, error);
        Assert.Empty(Directory.GetFileSystemEntries(output.Path));
    }

    [Theory]
    [InlineData("t10k-labels-idx1-ubyte", 5)]
    [InlineData("train-labels-idx1-ubyte", 40)]
    public void LabelsOutsideTheClassesFailAtLoadNamingFileAndRecord(string file, int record)
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string path = data.File(file);
        byte[] bytes = File.ReadAllBytes(path);
        bytes[8 + record] = 200; // after the 8-byte IDX header
        File.WriteAllBytes(path, bytes);
        string error = AssertOneLineError(Run(Train(data.Path, output.Path, "--epochs", "1")), 1);
        Assert.Contains(file, error);
        Assert.Contains($"record {record} has label 200", error);
        Assert.Empty(Directory.GetFiles(output.Path));
    }

    [Fact]
    public void AnEmptyTestSetFailsBeforeTraining()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        File.WriteAllBytes(data.File("t10k-images-idx3-ubyte"), IdxTestFiles.Images(0, 8, 8, (_, _) => 0));
        File.WriteAllBytes(data.File("t10k-labels-idx1-ubyte"), IdxTestFiles.Labels());
        string error = AssertOneLineError(Run(Train(data.Path, output.Path, "--epochs", "1")), 1);
        Assert.Contains("t10k-images-idx3-ubyte", error);
        Assert.Contains("no images", error);
        Assert.Empty(Directory.GetFiles(output.Path));
    }

    [Fact]
    public void AnOutThatCannotBeADirectoryFailsBeforeTraining()
    {
        using var data = TinyData();
        using var root = new TempDirectory();
        File.WriteAllText(root.File("a-file"), "not a directory");
        string error = AssertOneLineError(Run(Train(data.Path, root.File("a-file"), "--epochs", "1")), 1);
        Assert.Contains("a-file", error);
    }

    [Fact]
    public void CorruptJsonInACheckpointIsOneLineOnEvalAndResume()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        Assert.Equal(0, Run(Train(data.Path, output.Path, "--epochs", "1")).Code);
        foreach (string name in new[] { Trainer.LastCheckpoint, Trainer.BestCheckpoint })
        {
            var file = SafeTensorsFile.Load(output.File(name));
            file.Metadata["config"] = "{not json";
            file.Save(output.File(name));
        }
        Assert.Contains("metadata 'config'", AssertOneLineError(Run("eval", "--checkpoint", output.Path, "--data", data.Path), 1));
        Assert.Contains("metadata 'config'", AssertOneLineError(Run("train", "--resume", output.Path, "--epochs", "2", "--data", data.Path), 1));
    }

    [Fact]
    public void ResumeRefusesOptionsThatWouldChangeTheRunAndStopsWhenNothingIsLeft()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        Assert.Equal(0, Run(Train(data.Path, output.Path, "--epochs", "1", "--lr", "0.002")).Code);
        string error = AssertOneLineError(Run("train", "--resume", output.Path, "--epochs", "2", "--lr", "0.01", "--data", data.Path), 1);
        Assert.Contains("--lr 0.01 differs from the resumed run's 0.002", error);
        Assert.Contains("--seed", AssertOneLineError(Run("train", "--resume", output.Path, "--seed", "9", "--data", data.Path), 1));
        Assert.Contains("--exact-sparsity off differs from the resumed run's auto",
            AssertOneLineError(Run("train", "--resume", output.Path, "--exact-sparsity", "off", "--data", data.Path), 1));
        // The same value as the run's is no change.
        var same = Run("train", "--resume", output.Path, "--epochs", "2", "--lr", "0.002", "--data", data.Path);
        Assert.True(same.Code == 0, same.Stderr);
        var nothing = Run("train", "--resume", output.Path, "--data", data.Path);
        Assert.Equal(0, nothing.Code);
        Assert.Contains("nothing to train", nothing.Stdout);
        Assert.Equal(2, File.ReadAllLines(output.File(Trainer.MetricsFile)).Length);
    }

    [Fact]
    public void ResumeRefusesAnotherInputNormalisationAndAcceptsTheRunsOwn()
    {
        using var data = TinyData();
        using var plain = new TempDirectory();
        using var normalised = new TempDirectory();
        Assert.Equal(0, Run(Train(data.Path, plain.Path, "--epochs", "1")).Code);
        Assert.Equal(0, Run(Train(data.Path, normalised.Path, "--epochs", "1", "--mean", "0.25", "--std", "0.5")).Code);

        Assert.Contains("(mean 0.25 std 0.5) differs from the resumed run's (none)",
            AssertOneLineError(Run("train", "--resume", plain.Path, "--epochs", "2", "--mean", "0.25", "--std", "0.5", "--data", data.Path), 1));
        Assert.Contains("differs from the resumed run's (none)",
            AssertOneLineError(Run("train", "--resume", plain.Path, "--epochs", "2", "--normalize", "--data", data.Path), 1));
        Assert.Contains("(mean 0.5 std 0.5) differs from the resumed run's (mean 0.25 std 0.5)",
            AssertOneLineError(Run("train", "--resume", normalised.Path, "--epochs", "2", "--mean", "0.5", "--std", "0.5", "--data", data.Path), 1));
        Assert.Single(File.ReadAllLines(plain.File(Trainer.MetricsFile)));

        var same = Run("train", "--resume", normalised.Path, "--epochs", "2", "--mean", "0.25", "--std", "0.5", "--data", data.Path);
        Assert.True(same.Code == 0, same.Stderr);
        Assert.Equal(2, File.ReadAllLines(normalised.File(Trainer.MetricsFile)).Length);
    }

    [Fact]
    public void AnExplodingLossIsWarnedAndRecorded()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        var result = Run(Train(data.Path, output.Path, "--epochs", "1", "--lr", "10"));
        Assert.True(result.Code == 0, result.Stderr);
        Assert.Contains("warning: epoch 1: train loss", result.Stderr);
        Assert.Contains("diverging", result.Stderr);
        using var line = JsonDocument.Parse(File.ReadAllLines(output.File(Trainer.MetricsFile))[0]);
        Assert.Contains("diverging", line.RootElement.GetProperty("warnings")[0].GetString());
    }

    [Fact]
    public void EvalTakesARunDirectoryAndDevSizeErrorsSpeakOfTheOption()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        Assert.Equal(0, Run(Train(data.Path, output.Path, "--epochs", "1")).Code);
        var eval = Run("eval", "--checkpoint", output.Path, "--data", data.Path);
        Assert.True(eval.Code == 0, eval.Stderr);
        Assert.Contains(Trainer.BestCheckpoint, eval.Stdout);
        using var other = new TempDirectory();
        string error = AssertOneLineError(Run("train", "--data", data.Path, "--out", other.Path, "--model", "mlp", "--dev-size", "500"), 1);
        Assert.Contains("dev size 500", error);
    }
}
