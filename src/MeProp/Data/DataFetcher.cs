using System.Security.Cryptography;

namespace MeProp.Data;

/// <summary>
/// Makes sure a cache directory holds a data set's files with the expected SHA-256 (see
/// <see cref="KnownDataSet"/> for the sets it knows and where they come from). Missing files are fetched
/// from the sources in order; each file is staged beside the cache, verified, and only then renamed into
/// place, so the cache never holds a partial or unverified file. When no source delivers, the error lists
/// every source tried and why it failed, then says how to place the files by hand; a checksum mismatch is
/// never accepted.
/// </summary>
public sealed class DataFetcher
{
    private readonly IReadOnlyList<IDataSource> _sources;
    private readonly IReadOnlyDictionary<string, string> _expectedSha256;
    private readonly string _byHand;
    private readonly Action<string>? _progress;

    /// <param name="cacheDirectory">Where the files live; created when missing.</param>
    /// <param name="sources">Tried in order for the files still missing.</param>
    /// <param name="expectedSha256">The files to ensure, by name as the cache keeps them, with their hex SHA-256.</param>
    /// <param name="progress">Receives one line per step, or null.</param>
    /// <param name="byHand">
    /// The last sentence of the error when no source delivers: how to place the files by hand. Default:
    /// copy the files, by name, into the cache directory.
    /// </param>
    public DataFetcher(string cacheDirectory, IReadOnlyList<IDataSource> sources,
        IReadOnlyDictionary<string, string> expectedSha256, Action<string>? progress = null, string? byHand = null)
    {
        CacheDirectory = Path.GetFullPath(cacheDirectory);
        _sources = sources;
        _expectedSha256 = expectedSha256;
        _progress = progress;
        _byHand = byHand ?? $"Without network, copy the files ({string.Join(", ", expectedSha256.Keys)}) into that directory by hand; " +
                            "their checksums are verified on the next run";
    }

    /// <summary>The full path of the cache directory.</summary>
    public string CacheDirectory { get; }

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
        foreach (IDataSource source in _sources)
        {
            await TryFetchAsync(source, missing, failures, cancellationToken);
            if (missing.Count == 0) return CacheDirectory;
        }
        string tried = failures.Count == 0 ? "no sources configured" : string.Join("; ", failures);
        throw new DataFetchException(
            $"could not fetch {string.Join(", ", missing)} into {CacheDirectory}: {tried}. {_byHand}");
    }

    /// <summary>
    /// Lets one source deliver the missing files into a staging directory inside the cache (the same file
    /// system, so the final rename is atomic), moves each file whose checksum matches into place, removes
    /// it from <paramref name="missing"/>, and records each failure in <paramref name="failures"/>.
    /// </summary>
    private async Task TryFetchAsync(IDataSource source, List<string> missing, List<string> failures,
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
