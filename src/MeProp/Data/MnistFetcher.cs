namespace MeProp.Data;

/// <summary>
/// MNIST's cache and fetcher in one call each, for callers that only ever want MNIST; the work is done by
/// <see cref="KnownDataSet.Mnist"/> and <see cref="DataFetcher"/>.
/// </summary>
public static class MnistFetcher
{
    /// <summary>$MEPROP_DATA when set and not empty, else ~/.cache/meprop/mnist.</summary>
    public static string DefaultCacheDirectory() => KnownDataSet.Mnist.DefaultCacheDirectory();

    /// <summary>A fetcher for MNIST: see <see cref="KnownDataSet.CreateFetcher"/>.</summary>
    public static DataFetcher CreateDefault(string? cacheDirectory = null, Action<string>? progress = null) =>
        KnownDataSet.Mnist.CreateFetcher(cacheDirectory, progress);
}
