using System.Diagnostics;
using System.Text.Json;

namespace MeProp.Cli.Benchmarking;

/// <summary>
/// Runs the libtorch baseline (bench/MeProp.TorchBaseline, built separately because its libtorch
/// package is large) as a child process with glibc's allocator thresholds raised, as its best runs
/// were measured, and reads its one-line JSON.
/// </summary>
internal sealed class TorchSharpBaseline(string assemblyPath)
{
    /// <summary>Where `dotnet build -c Release bench/MeProp.TorchBaseline` puts the runner, relative to the repository.</summary>
    public const string DefaultRelativePath = "bench/MeProp.TorchBaseline/bin/Release/net10.0/MeProp.TorchBaseline.dll";

    public string AssemblyPath { get; } = assemblyPath;

    /// <summary>Finds the runner from the current directory upwards; null when it has not been built.</summary>
    public static TorchSharpBaseline? Find(string? explicitPath)
    {
        if (explicitPath is not null)
            return File.Exists(explicitPath) ? new TorchSharpBaseline(Path.GetFullPath(explicitPath))
                : throw new ArgumentException($"--torchsharp: {explicitPath} does not exist");
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, DefaultRelativePath);
            if (File.Exists(candidate)) return new TorchSharpBaseline(candidate);
        }
        return null;
    }

    /// <summary>Runs one measurement; on failure returns a record whose Note says why.</summary>
    public StepRecord Run(int batch, int threads, int steps, int warmup, ulong seed)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { AssemblyPath, "--batch", batch.ToString(), "--threads", threads.ToString(),
                     "--steps", steps.ToString(), "--warmup", warmup.ToString(), "--seed", seed.ToString(), "--json" })
            start.ArgumentList.Add(arg);
        start.Environment["MALLOC_MMAP_THRESHOLD_"] = "67108864";
        start.Environment["MALLOC_TRIM_THRESHOLD_"] = "268435456";
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start dotnet for the TorchSharp baseline");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var failed = new StepRecord { Engine = "torchsharp", Mode = "dense", Batch = batch, Threads = threads, Steps = 0 };
        if (process.ExitCode != 0)
            return failed with { Note = $"TorchSharp baseline failed (exit {process.ExitCode}): {stderr.Result.Trim()}" };
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        return failed with
        {
            Steps = root.GetProperty("steps").GetInt32(),
            ForwardMs = root.GetProperty("forward_ms").GetDouble(),
            BackwardMs = root.GetProperty("backward_ms").GetDouble(),
            UpdateMs = root.GetProperty("update_ms").GetDouble(),
            StepMs = root.GetProperty("step_ms").GetDouble(),
            StepMsP10 = root.GetProperty("step_ms_p10").GetDouble(),
            StepMsP90 = root.GetProperty("step_ms_p90").GetDouble(),
            Note = "libtorch " + root.GetProperty("libtorch_version").GetString(),
        };
    }
}
