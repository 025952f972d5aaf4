using System.Diagnostics;
using System.Text.Json;

namespace MeProp.Cli.Benchmarking;

/// <summary>
/// Runs the libtorch baseline (bench/MeProp.TorchBaseline, its own project because its libtorch package
/// is large) as a child process with glibc's allocator thresholds raised, as its best runs were measured,
/// and reads its one-line JSON. <see cref="Obtain"/> finds the built runner, or builds it from the
/// repository's project when it has not been built.
/// </summary>
internal sealed class TorchSharpBaseline(string assemblyPath)
{
    /// <summary>The runner's project, relative to the repository.</summary>
    public const string ProjectRelativePath = "bench/MeProp.TorchBaseline/MeProp.TorchBaseline.csproj";

    /// <summary>Where `dotnet build -c Release bench/MeProp.TorchBaseline` puts the runner, relative to the repository.</summary>
    public const string DefaultRelativePath = "bench/MeProp.TorchBaseline/bin/Release/net10.0/MeProp.TorchBaseline.dll";

    /// <summary>The command that builds the runner, as a user types it at the repository's root.</summary>
    public const string BuildHint = "dotnet build -c Release bench/MeProp.TorchBaseline";

    public string AssemblyPath { get; } = assemblyPath;

    /// <summary>
    /// The nearest of the built runner and the repository's runner project from <paramref name="startDirectory"/>
    /// upwards: (runner, null) where a directory holds the built runner, (null, project) where the first
    /// directory that holds the project has no runner yet, (null, null) where neither is found.
    /// </summary>
    public static (string? Assembly, string? Project) Locate(string startDirectory)
    {
        for (var dir = new DirectoryInfo(startDirectory); dir is not null; dir = dir.Parent)
        {
            string assembly = Path.Combine(dir.FullName, DefaultRelativePath);
            if (File.Exists(assembly)) return (assembly, null);
            string project = Path.Combine(dir.FullName, ProjectRelativePath);
            if (File.Exists(project)) return (null, project);
        }
        return (null, null);
    }

    /// <summary>Finds the runner from the current directory upwards; null when it has not been built.</summary>
    public static TorchSharpBaseline? Find(string? explicitPath)
    {
        if (explicitPath is not null)
            return File.Exists(explicitPath) ? new TorchSharpBaseline(Path.GetFullPath(explicitPath))
                : throw new ArgumentException($"--torchsharp: {explicitPath} does not exist");
        return Locate(Directory.GetCurrentDirectory()).Assembly is string found ? new TorchSharpBaseline(found) : null;
    }

    /// <summary>
    /// The runner at <paramref name="explicitPath"/> (which must exist), else the nearest built one above
    /// <paramref name="startDirectory"/>, else the one <paramref name="build"/> makes from the repository's
    /// project found there (its output shown as it goes). Where there is no project or the build fails it
    /// writes one line to <paramref name="log"/> saying what to run, and returns null.
    /// </summary>
    /// <param name="build">Builds a project and returns the exit code; default <see cref="DotnetBuild"/>.</param>
    public static TorchSharpBaseline? Obtain(string? explicitPath, string startDirectory, TextWriter log, Func<string, int>? build = null)
    {
        if (explicitPath is not null) return Find(explicitPath);
        var (assembly, project) = Locate(startDirectory);
        if (assembly is not null) return new TorchSharpBaseline(assembly);
        if (project is null)
        {
            log.WriteLine($"TorchSharp baseline not found (no {DefaultRelativePath} or {ProjectRelativePath} above {startDirectory}): " +
                $"run '{BuildHint}' in a checkout of the repository and bench from there, or pass --torchsharp PATH; comparing nothing");
            return null;
        }
        log.WriteLine($"TorchSharp baseline not built: building it (restores ~600 MB of libtorch the first time): dotnet build -c Release {project}");
        log.Flush();
        int code = (build ?? DotnetBuild)(project);
        string built = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(project))!)!, DefaultRelativePath);
        if (code == 0 && File.Exists(built)) return new TorchSharpBaseline(built);
        log.WriteLine(code != 0
            ? $"TorchSharp baseline build failed (exit {code}): run 'dotnet build -c Release {project}' to see why; comparing nothing"
            : $"TorchSharp baseline built but {built} is missing: run 'dotnet build -c Release {project}'; comparing nothing");
        return null;
    }

    /// <summary>`dotnet build -c Release PROJECT` as a child process whose output goes to this console; its exit code.</summary>
    public static int DotnetBuild(string project)
    {
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false };
        // No build servers left behind: they would sit beside the timed runs that follow.
        foreach (string arg in new[] { "build", "-c", "Release", project, "--nologo", "--disable-build-servers" }) start.ArgumentList.Add(arg);
        try
        {
            using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start dotnet");
            process.WaitForExit();
            return process.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception) { return -1; }
    }

    /// <summary>
    /// Runs one measurement, of the paper's network or, with <paramref name="modelPath"/>, of that network
    /// file (the runner's --model); on failure returns a record whose Note says why.
    /// </summary>
    public StepRecord Run(int batch, int threads, int steps, int warmup, ulong seed, string? modelPath = null)
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
        if (modelPath is not null)
        {
            start.ArgumentList.Add("--model");
            start.ArgumentList.Add(modelPath);
        }
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
            EvalForwardMs = root.TryGetProperty("eval_forward_ms", out var evalForward) ? evalForward.GetDouble() : null,
            Note = "libtorch " + root.GetProperty("libtorch_version").GetString(),
        };
    }
}
