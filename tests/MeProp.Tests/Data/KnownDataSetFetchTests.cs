using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using MeProp.Data;

namespace MeProp.Tests.Data;

/// <summary>
/// <c>meprop data fetch NAME</c>'s data sets wired as <see cref="KnownDataSet.CreateFetcher"/> wires them,
/// with synthetic files and checksums, served by an HTTP server on 127.0.0.1 or copied from a local
/// directory. No test contacts a public address or runs npm.
/// </summary>
public sealed class KnownDataSetFetchTests : IDisposable
{
    private readonly TempDirectory _directory = new();
    private readonly HttpClient _httpClient = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly List<string> _progress = [];

    public void Dispose()
    {
        _httpClient.Dispose();
        _directory.Dispose();
    }

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private string Cache => _directory.File("cache");

    /// <summary>A CIFAR-10 binary archive in the distributed layout: cifar-10-batches-bin/ with 5 + 1 batches of 2 records and the class names.</summary>
    private static byte[] Cifar10Archive()
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest))
        using (var tar = new TarWriter(gzip, TarEntryFormat.Pax))
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, CifarBinary.Cifar10Folder + "/"));
            void Write(string name, byte[] bytes) =>
                tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, $"{CifarBinary.Cifar10Folder}/{name}") { DataStream = new MemoryStream(bytes) });
            Write("batches.meta.txt", "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n"u8.ToArray());
            for (int b = 1; b <= 5; b++) Write($"data_batch_{b}.bin", Records(2, b));
            Write(CifarBinary.Cifar10Test, Records(2, 0));
        }
        return output.ToArray();

        // Label byte, then 3 x 32 x 32 pixels.
        static byte[] Records(int count, int batch) =>
            Enumerable.Range(0, count).SelectMany(n => new[] { (byte)((batch + n) % 10) }.Concat(Enumerable.Repeat((byte)(batch * 10 + n), 3072))).ToArray();
    }

    /// <summary>Four tiny IDX files in MNIST's names: 3 training and 2 test images of 2x2.</summary>
    private static Dictionary<string, byte[]> IdxFiles() => new()
    {
        [MnistFiles.TrainImages] = IdxTestFiles.Images(3, 2, 2, (n, i) => (byte)(n * 4 + i)),
        [MnistFiles.TrainLabels] = IdxTestFiles.Labels(0, 1, 2),
        [MnistFiles.TestImages] = IdxTestFiles.Images(2, 2, 2, (n, i) => (byte)(100 + n * 4 + i)),
        [MnistFiles.TestLabels] = IdxTestFiles.Labels(2, 0),
    };

    private static Dictionary<string, string> Checksums(Dictionary<string, byte[]> files) =>
        files.ToDictionary(file => file.Key, file => Sha256(file.Value));

    private DataFetcher Fetcher(KnownDataSet set, params string[] mirrors) =>
        set.CreateFetcher(Cache, _progress.Add, mirrors, useNpm: false, _httpClient);

    private void AssertCacheHoldsOnly(params string[] names) =>
        Assert.Equal(names.Order(), Directory.EnumerateFileSystemEntries(Cache).Select(Path.GetFileName).Order());

    [Fact]
    public async Task Cifar10_PlacesTheArchiveAsItIs_AndItLoads()
    {
        byte[] archive = Cifar10Archive();
        await using var server = new LocalHttpServer();
        server.Files["/kriz/cifar-10-binary.tar.gz"] = archive;
        var set = KnownDataSet.Cifar10 with { Sha256 = new Dictionary<string, string> { [CifarBinary.Cifar10Archive] = Sha256(archive) } };

        string directory = await Fetcher(set, new Uri(server.BaseUrl, "missing/").AbsoluteUri, new Uri(server.BaseUrl, "kriz/").AbsoluteUri).EnsureAsync();

        Assert.Equal(["/missing/cifar-10-binary.tar.gz", "/kriz/cifar-10-binary.tar.gz"], server.Requests);
        Assert.Equal(archive, File.ReadAllBytes(Path.Combine(directory, CifarBinary.Cifar10Archive)));
        AssertCacheHoldsOnly(CifarBinary.Cifar10Archive);
        var data = DataDirectory.Load(directory);
        Assert.Equal(("cifar10", 10, 2, 3), (data.Format, data.Training.Count, data.Test.Count, data.Training.Channels));
        Assert.Equal("truck", data.ClassNames[9]);
    }

    [Fact]
    public async Task Cifar10_WrongArchive_FailsSayingWhatWasTriedAndHowToPlaceItByHand()
    {
        byte[] archive = Cifar10Archive();
        await using var server = new LocalHttpServer();
        server.Files["/kriz/cifar-10-binary.tar.gz"] = archive;
        string expected = new('0', 64);
        var set = KnownDataSet.Cifar10 with { Sha256 = new Dictionary<string, string> { [CifarBinary.Cifar10Archive] = expected } };
        string mirror = new Uri(server.BaseUrl, "kriz/").AbsoluteUri;

        var error = await Assert.ThrowsAsync<DataFetchException>(() => Fetcher(set, mirror).EnsureAsync());

        Assert.DoesNotContain('\n', error.Message);
        Assert.Equal(
            $"could not fetch cifar-10-binary.tar.gz into {Path.GetFullPath(Cache)}: {mirror}: cifar-10-binary.tar.gz has SHA-256 {Sha256(archive)}, expected {expected}. " +
            "Without network, download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz elsewhere and copy it, as it is (not extracted), " +
            "into that directory by hand; its checksum is verified on the next run",
            error.Message);
        AssertCacheHoldsOnly();
    }

    [Fact]
    public async Task FashionMnist_DownloadsAndDecompressesFromAMirrorNamedWithAPlaceholder()
    {
        var files = IdxFiles();
        await using var server = new LocalHttpServer();
        foreach (var (name, bytes) in files) server.Files[$"/sets/fashion-mnist/{name}.gz"] = IdxTestFiles.Gzip(bytes);
        var set = KnownDataSet.FashionMnist with { Sha256 = Checksums(files), LocalCopies = [] };

        string directory = await Fetcher(set, server.BaseUrl.AbsoluteUri + "sets/{name}").EnsureAsync();

        foreach (var (name, bytes) in files) Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(directory, name)));
        AssertCacheHoldsOnly([.. MnistFiles.Names]);
        var data = DataDirectory.Load(directory);
        Assert.Equal((3, 2), (data.Training.Count, data.Test.Count));
    }

    [Fact]
    public async Task FashionMnist_CopiesALocalCopyBeforeTryingTheMirrors()
    {
        var files = IdxFiles();
        string local = Directory.CreateDirectory(_directory.File("debian")).FullName;
        foreach (var (name, bytes) in files) File.WriteAllBytes(Path.Combine(local, name + ".gz"), IdxTestFiles.Gzip(bytes));
        await using var server = new LocalHttpServer();
        var set = KnownDataSet.FashionMnist with { Sha256 = Checksums(files), LocalCopies = [local, _directory.File("absent")] };

        await Fetcher(set, server.BaseUrl.AbsoluteUri).EnsureAsync();

        Assert.Empty(server.Requests);
        foreach (var (name, bytes) in files) Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(Cache, name)));
        Assert.Contains(_progress, line => line.StartsWith($"verified {MnistFiles.TrainImages} from local copy {local}"));
    }

    [Fact]
    public async Task FashionMnist_NothingAnswers_SaysHowToPlaceTheFilesByHand()
    {
        await using var server = new LocalHttpServer();
        var set = KnownDataSet.FashionMnist with { LocalCopies = [] };

        var error = await Assert.ThrowsAsync<DataFetchException>(() => Fetcher(set, server.BaseUrl.AbsoluteUri).EnsureAsync());

        Assert.Contains($"{server.BaseUrl}train-images-idx3-ubyte.gz: HTTP 404 Not Found. Without network, install Debian's dataset-fashion-mnist", error.Message);
        Assert.EndsWith("into that directory by hand and decompress them (gunzip); their checksums are verified on the next run", error.Message);
    }

    /// <summary>The Fashion-MNIST checksums against Debian's copy of the upstream files, where it is installed.</summary>
    [Fact]
    public async Task FashionMnist_ChecksumsMatchDebiansCopy()
    {
        const string debian = "/usr/share/datasets/fashion-mnist";
        if (!Directory.Exists(debian)) return;
        await using var server = new LocalHttpServer();

        await Fetcher(KnownDataSet.FashionMnist with { LocalCopies = [debian] }, server.BaseUrl.AbsoluteUri).EnsureAsync();

        Assert.Empty(server.Requests);
        var data = DataDirectory.Load(Cache);
        Assert.Equal((60000, 10000, 10), (data.Training.Count, data.Test.Count, data.Training.Classes));
    }

    [Fact]
    public void Mirrors_GivenBeforeEnvironmentBeforeDefaults()
    {
        var set = KnownDataSet.Cifar10;
        Assert.Equal(set.Mirrors, set.ResolveMirrors(null, null));
        Assert.Equal(set.Mirrors, set.ResolveMirrors([], " "));
        Assert.Equal([new Uri("https://a.example/cifar10/"), new Uri("http://b.example/x")],
            set.ResolveMirrors(null, " https://a.example/{name}/ ,http://b.example/x,"));
        Assert.Equal([new Uri("https://c.example/")], set.ResolveMirrors(["https://c.example/"], "https://a.example/"));
        var error = Assert.Throws<ArgumentException>(() => set.ResolveMirrors(["ftp://d.example/"], null));
        Assert.Equal("mirror 'ftp://d.example/' is not an http or https URL", error.Message);
    }

    [Theory]
    [InlineData("mnist", "/data/m", "/data/m")]
    [InlineData("mnist", null, "/home/u/.cache/meprop/mnist")]
    [InlineData("fashion-mnist", null, "/home/u/.cache/meprop/fashion-mnist")]
    [InlineData("cifar10", null, "/home/u/.cache/meprop/cifar10")]
    public void CacheDirectory_IsUnderHomeByName(string name, string? variable, string expected)
    {
        Assert.Equal(expected.Replace('/', Path.DirectorySeparatorChar),
            KnownDataSet.Find(name).ResolveCacheDirectory(variable, "/home/u".Replace('/', Path.DirectorySeparatorChar)));
        Assert.Equal(name == "mnist" ? "MEPROP_DATA" : null, KnownDataSet.Find(name).CacheVariable);
    }

    [Fact]
    public void Find_UnknownName_ListsTheKnownOnes()
    {
        Assert.Same(KnownDataSet.FashionMnist, KnownDataSet.Find("Fashion-MNIST"));
        var error = Assert.Throws<ArgumentException>(() => KnownDataSet.Find("svhn"));
        Assert.Equal("unknown data set 'svhn': known are mnist, fashion-mnist, cifar10", error.Message);
    }

    [Fact]
    public void KnownSets_ChecksumEveryFileTheLoaderNeeds()
    {
        Assert.Equal(MnistFiles.Names.Order(), KnownDataSet.FashionMnist.Sha256.Keys.Order());
        Assert.Equal([CifarBinary.Cifar10Archive], KnownDataSet.Cifar10.Sha256.Keys);
        Assert.All(KnownDataSet.All.SelectMany(set => set.Sha256.Values), sha => Assert.Matches("^[0-9a-f]{64}$", sha));
        Assert.True(KnownDataSet.Mnist.MirrorsServeGzip && KnownDataSet.FashionMnist.MirrorsServeGzip && !KnownDataSet.Cifar10.MirrorsServeGzip);
    }
}
