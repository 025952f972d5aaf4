using System.IO.Compression;

namespace MeProp.Data;

/// <summary>
/// Copies the files from a directory on this machine that holds them plain or as <c>{name}.gz</c>
/// (decompressed on the way), e.g. Debian's <c>dataset-fashion-mnist</c> in /usr/share/datasets/fashion-mnist.
/// </summary>
public sealed class LocalCopySource : IDataSource
{
    private readonly string _directory;

    /// <param name="directory">The directory holding the files.</param>
    public LocalCopySource(string directory) => _directory = Path.GetFullPath(directory);

    public string Description => $"local copy {_directory}";

    public async Task FetchAsync(IReadOnlyList<string> fileNames, string stagingDirectory, Action<string>? progress,
        CancellationToken cancellationToken)
    {
        if (!Directory.Exists(_directory)) throw new IOException("no such directory");
        foreach (string name in fileNames)
        {
            string plain = Path.Combine(_directory, name), gzipped = plain + ".gz";
            bool isPlain = File.Exists(plain);
            if (!isPlain && !File.Exists(gzipped)) throw new IOException($"has neither {name} nor {name}.gz");
            progress?.Invoke($"copying {(isPlain ? plain : gzipped)}");
            try
            {
                await using var input = File.OpenRead(isPlain ? plain : gzipped);
                await using Stream content = isPlain ? input : new GZipStream(input, CompressionMode.Decompress);
                await using var output = new FileStream(Path.Combine(stagingDirectory, name), FileMode.CreateNew);
                await content.CopyToAsync(output, cancellationToken);
            }
            catch (InvalidDataException e)
            {
                throw new IOException($"{gzipped}: {e.Message}", e);
            }
        }
    }
}
