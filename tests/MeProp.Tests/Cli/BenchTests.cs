using MeProp.Cli.Commands;
using MeProp.Cli.Benchmarking;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Training;

namespace MeProp.Tests.Cli;

/// <summary>
/// `meprop bench`'s parts that need no libtorch: finding (or building, with a stand-in for `dotnet build`)
/// the TorchSharp baseline, the machine probe at tiny sizes, and the GFLOP/s arithmetic.
/// </summary>
[Collection("Console")]
public sealed class BenchTests
{
    private static string MakeFile(string root, string relative)
    {
        string path = Path.Combine(root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, "");
        return path;
    }

    [Fact]
    public void Locate_finds_the_nearest_runner_or_project_above_the_start()
    {
        using var dir = new TempDirectory();
        string deep = Directory.CreateDirectory(Path.Combine(dir.Path, "repo", "src", "a", "b")).FullName;
        Assert.Equal((null, null), TorchSharpBaseline.Locate(deep));

        string project = MakeFile(Path.Combine(dir.Path, "repo"), TorchSharpBaseline.ProjectRelativePath);
        Assert.Equal((null, project), TorchSharpBaseline.Locate(deep));

        string runner = MakeFile(Path.Combine(dir.Path, "repo"), TorchSharpBaseline.DefaultRelativePath);
        Assert.Equal((runner, null), TorchSharpBaseline.Locate(deep));
    }

    [Fact]
    public void Obtain_without_a_project_says_in_one_line_what_to_run_and_builds_nothing()
    {
        using var dir = new TempDirectory();
        var log = new StringWriter();
        bool built = false;
        var baseline = TorchSharpBaseline.Obtain(null, dir.Path, log, _ => { built = true; return 0; });
        Assert.Null(baseline);
        Assert.False(built);
        var lines = log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains("'" + TorchSharpBaseline.BuildHint + "'", lines[0]);
        Assert.Contains("comparing nothing", lines[0]);
    }

    [Fact]
    public void Obtain_builds_a_missing_runner_from_the_project_found_above()
    {
        using var dir = new TempDirectory();
        string repo = Path.Combine(dir.Path, "repo");
        string project = MakeFile(repo, TorchSharpBaseline.ProjectRelativePath);
        string start = Directory.CreateDirectory(Path.Combine(repo, "docs")).FullName;
        var log = new StringWriter();
        string? builtProject = null;
        var baseline = TorchSharpBaseline.Obtain(null, start, log, p =>
        {
            builtProject = p;
            MakeFile(repo, TorchSharpBaseline.DefaultRelativePath);
            return 0;
        });
        Assert.Equal(project, builtProject);
        Assert.Equal(Path.Combine(repo, TorchSharpBaseline.DefaultRelativePath), baseline?.AssemblyPath);
        Assert.Contains("dotnet build -c Release " + project, log.ToString());

        // Once built, it is found without building again.
        Assert.NotNull(TorchSharpBaseline.Obtain(null, start, new StringWriter(), _ => throw new InvalidOperationException("built twice")));
    }

    [Fact]
    public void Obtain_when_the_build_fails_says_in_one_line_what_to_run_and_continues()
    {
        using var dir = new TempDirectory();
        string project = MakeFile(dir.Path, TorchSharpBaseline.ProjectRelativePath);
        var log = new StringWriter();
        Assert.Null(TorchSharpBaseline.Obtain(null, dir.Path, log, _ => 1));
        var lines = log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length); // "building it: ..." then the failure
        Assert.Contains("failed (exit 1)", lines[1]);
        Assert.Contains("'dotnet build -c Release " + project + "'", lines[1]);

        // A build that exits 0 but leaves no runner is a failure too.
        log = new StringWriter();
        Assert.Null(TorchSharpBaseline.Obtain(null, dir.Path, log, _ => 0));
        Assert.Contains("is missing", log.ToString());
    }

    [Fact]
    public void Obtain_with_an_explicit_path_that_does_not_exist_is_an_error()
    {
        using var dir = new TempDirectory();
        Assert.Throws<ArgumentException>(() => TorchSharpBaseline.Obtain(dir.File("none.dll"), dir.Path, new StringWriter(), _ => 0));
        Assert.Contains("--torchsharp", CliHarness.AssertOneLineError(CliHarness.Run("bench", "--torchsharp", dir.File("none.dll")), 1));
    }

    [Fact]
    public void Probe_returns_positive_finite_figures_quickly_at_tiny_sizes()
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        var figures = MachineProbe.Run([2], secondsPerFigure: 0.01, triadArrayBytes: 1 << 20);
        Assert.True(started.Elapsed.TotalSeconds < 10, $"probe took {started.Elapsed.TotalSeconds:F1} s");
        foreach (double value in new[] { figures.FmaGflopsPerCore, figures.FmaGflopsAllThreads, figures.TriadGBPerSecond }.Concat(figures.FmaGflopsByThreads.Values))
            Assert.True(double.IsFinite(value) && value > 0, $"figure {value}");
        Assert.Contains(1, figures.FmaGflopsByThreads.Keys);
        Assert.Contains(2, figures.FmaGflopsByThreads.Keys);
        Assert.Contains(Environment.ProcessorCount, figures.FmaGflopsByThreads.Keys);
        Assert.Contains(figures.VectorBits, new[] { 128, 256, 512 });
        Assert.Equal(1 << 20, figures.TriadArrayBytes);
        Assert.True(MachineProbe.LastLevelCacheBytes() > 0);
    }

    [Fact]
    public void Gflops_of_a_known_step()
    {
        // 3e6 multiply-adds per example, batch 10, 1 ms: 2 x 3e6 x 10 FLOP / 1e-3 s = 60 GFLOP/s.
        Assert.Equal(60.0, StepBenchmark.DenseEquivalentGflops(3_000_000, 10, 1.0), 9);

        // The paper's CNN: 13.88 M forward and 27.14 M dense-backward multiply-adds per example, so a
        // batch-100 step is 8.2 GFLOP (issue 20's figure).
        using var compute = new ComputeContext(1);
        var model = Trainer.BuildModel(new TrainOptions { Seed = 1, Threads = 1, BatchSize = 1 }, 1, 28, 28, 10, compute);
        var summary = new ModelSummary(model, [1, 28, 28]);
        Assert.Equal(32L * 28 * 28 * 25 + 64L * 14 * 14 * 32 * 25 + 3136L * 1024 + 1024L * 10, summary.ForwardMacs);
        Assert.Equal(8.2, 2.0 * 100 * (summary.ForwardMacs + summary.BackwardMacs) / 1e9, 1);

        // A record gets its GFLOP/s and the fraction of the peak at its thread count.
        var machine = new MachineFigures(512, 4, 100, 250, new() { [1] = 100, [2] = 190, [4] = 250 }, 50, 1 << 20);
        var record = new StepRecord
        {
            Engine = "meprop", Mode = "meprop", Batch = 10, Threads = 2, Steps = 5, StepMs = 1.0,
            ForwardMacsPerExample = 1_000_000, BackwardMacsPerExample = 2_000_000,
        }.WithFigures(machine);
        Assert.Equal(60.0, record.DenseEquivalentGflops);
        Assert.Equal(190.0, record.FmaPeakGflops);
        Assert.Equal(Math.Round(60.0 / 190, 4), record.FmaPeakFraction);
        Assert.Same(machine, record.Machine);
        Assert.Equal(250.0, machine.FmaPeakGflops(3)); // not measured: 3 x one core's, capped by all threads'

        // A failed record (no steps) gets no rate.
        Assert.Null((record with { Steps = 0, DenseEquivalentGflops = null }).WithFigures(machine).DenseEquivalentGflops);
    }

    [Fact]
    public void A_libtorch_step_that_moved_during_the_run_is_reported()
    {
        Assert.Null(BenchCommand.UnsteadyMachineNote([60.0]));
        Assert.Null(BenchCommand.UnsteadyMachineNote([60.0, 60.0 * BenchCommand.SteadySpread]));
        string? note = BenchCommand.UnsteadyMachineNote([75.1, 56.9]);
        Assert.NotNull(note);
        Assert.Contains("56.9 ms and 75.1 ms", note);
        Assert.Contains("32% apart", note);
    }
}
