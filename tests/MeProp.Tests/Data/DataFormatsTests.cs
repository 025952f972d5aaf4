using System.Formats.Tar;
using System.IO.Compression;
using MeProp.Data;
using StbImageWriteSharp;

namespace MeProp.Tests.Data;

/// <summary>
/// The data directory formats on small synthetic files in the exact distributed layouts: CIFAR-10 and
/// CIFAR-100 binary (loose, in their folder, and as the .tar.gz), image folders, and IDX class counts.
/// </summary>
public class DataFormatsTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    /// <summary>A CIFAR record: label byte(s), then 3072 pixels whose value encodes (image, channel).</summary>
    private static byte[] Records(int count, Func<int, byte[]> labels)
    {
        var bytes = new List<byte>();
        for (int n = 0; n < count; n++)
        {
            bytes.AddRange(labels(n));
            for (int c = 0; c < 3; c++) bytes.AddRange(Enumerable.Repeat((byte)(10 * n + c), 1024));
        }
        return bytes.ToArray();
    }

    private static Dictionary<string, byte[]> Cifar10Files()
    {
        var files = new Dictionary<string, byte[]>();
        for (int b = 1; b <= 5; b++) files[$"data_batch_{b}.bin"] = Records(2, n => [(byte)((2 * b + n) % 10)]);
        files["test_batch.bin"] = Records(3, n => [(byte)(9 - n)]);
        files["batches.meta.txt"] = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n"u8.ToArray();
        return files;
    }

    private void WriteFolder(string folder, Dictionary<string, byte[]> files)
    {
        Directory.CreateDirectory(folder);
        foreach (var (name, bytes) in files) File.WriteAllBytes(Path.Combine(folder, name), bytes);
    }

    private void WriteArchive(string path, string folder, Dictionary<string, byte[]> files)
    {
        using var output = File.Create(path);
        using var gzip = new GZipStream(output, CompressionLevel.Fastest);
        using var tar = new TarWriter(gzip, TarEntryFormat.Pax);
        tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, folder + "/"));
        foreach (var (name, bytes) in files)
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, $"{folder}/{name}") { DataStream = new MemoryStream(bytes) });
    }

    private static void AssertCifar10(ImageData data)
    {
        Assert.Equal("cifar10", data.Format);
        Assert.Equal((10, 3, 3, 32, 32, 10), (data.Training.Count, data.Test.Count, data.Training.Channels, data.Training.Height, data.Training.Width, data.Training.Classes));
        Assert.Equal("truck", data.ClassNames[9]);
        Assert.Equal([2, 3, 4, 5, 6, 7, 8, 9, 0, 1], data.Training.Labels.ToArray().Select(l => (int)l));
        // Image 1 of batch 1: red plane 10, green 11, blue 12 (/255), in NCHW.
        var image = data.Training.Images.Span.Slice(3072, 3072);
        Assert.Equal(10 / 255f, image[0]);
        Assert.Equal(11 / 255f, image[1024]);
        Assert.Equal(12 / 255f, image[3071]);
    }

    [Fact]
    public void Cifar10LoadsLooseInItsFolderAndFromTheArchive()
    {
        WriteFolder(_directory.File("loose"), Cifar10Files());
        AssertCifar10(DataDirectory.Load(_directory.File("loose")));
        WriteFolder(Path.Combine(_directory.File("folder"), CifarBinary.Cifar10Folder), Cifar10Files());
        AssertCifar10(DataDirectory.Load(_directory.File("folder")));
        Directory.CreateDirectory(_directory.File("archive"));
        WriteArchive(Path.Combine(_directory.File("archive"), CifarBinary.Cifar10Archive), CifarBinary.Cifar10Folder, Cifar10Files());
        AssertCifar10(DataDirectory.Load(_directory.File("archive")));
    }

    [Fact]
    public void BadCifarFilesNameTheFile()
    {
        var truncated = Cifar10Files();
        truncated["data_batch_3.bin"] = truncated["data_batch_3.bin"][..5000];
        WriteFolder(_directory.File("truncated"), truncated);
        var error = Assert.Throws<DataFormatException>(() => DataDirectory.Load(_directory.File("truncated")));
        Assert.Contains("data_batch_3.bin: 5000 bytes is not a whole number of 3073-byte records", error.Message);

        var badLabel = Cifar10Files();
        badLabel["test_batch.bin"][3073] = 10;
        WriteFolder(_directory.File("label"), badLabel);
        error = Assert.Throws<DataFormatException>(() => DataDirectory.Load(_directory.File("label")));
        Assert.Contains("test_batch.bin: record 1 has label 10, outside the 10 classes", error.Message);

        Directory.CreateDirectory(_directory.File("garbage"));
        File.WriteAllBytes(Path.Combine(_directory.File("garbage"), CifarBinary.Cifar10Archive), [1, 2, 3, 4]);
        error = Assert.Throws<DataFormatException>(() => DataDirectory.Load(_directory.File("garbage")));
        Assert.Contains(CifarBinary.Cifar10Archive, error.Message);
    }

    [Fact]
    public void Cifar100TakesFineOrCoarseLabels()
    {
        var files = new Dictionary<string, byte[]>
        {
            ["train.bin"] = Records(4, n => [(byte)(n * 5), (byte)(n * 25)]),
            ["test.bin"] = Records(2, n => [(byte)(19 - n), (byte)(99 - n)]),
            ["coarse_label_names.txt"] = System.Text.Encoding.UTF8.GetBytes(string.Join("\n", Enumerable.Range(0, 20).Select(i => $"super{i}"))),
        };
        string root = _directory.File("c100");
        Directory.CreateDirectory(root);
        WriteArchive(Path.Combine(root, CifarBinary.Cifar100Archive), CifarBinary.Cifar100Folder, files);
        var fine = DataDirectory.Load(root);
        Assert.Equal(("cifar100", 100), (fine.Format, fine.Training.Classes));
        Assert.Equal([0, 25, 50, 75], fine.Training.Labels.ToArray().Select(l => (int)l));
        Assert.Equal("99", fine.ClassNames[99]); // no fine names in the archive: numbers
        var coarse = DataDirectory.Load(root, new DataOptions { Cifar100Coarse = true });
        Assert.Equal(20, coarse.Training.Classes);
        Assert.Equal([19, 18], coarse.Test.Labels.ToArray().Select(l => (int)l));
        Assert.Equal("super19", coarse.ClassNames[19]);
    }

    private static void WritePng(string path, int width, int height, ColorComponents components, Func<int, byte> value)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        int channels = components == ColorComponents.Grey ? 1 : 3;
        var pixels = Enumerable.Range(0, width * height * channels).Select(value).ToArray();
        using var stream = File.Create(path);
        new ImageWriter().WritePng(pixels, width, height, components, stream);
    }

    [Fact]
    public void AnImageFolderInterleavesItsSortedClasses()
    {
        string root = _directory.File("folder");
        foreach (string split in new[] { "train", "test" })
            foreach (var (cls, count) in new[] { ("b-shirt", 2), ("a-coat", 3) })
                for (int i = 0; i < count; i++)
                    WritePng(Path.Combine(root, split, cls, $"img{i}.png"), 4, 3, ColorComponents.Grey, p => (byte)(p + 40 * i));
        var data = DataDirectory.Load(root);
        Assert.Equal(("image-folder", 1, 3, 4), (data.Format, data.Training.Channels, data.Training.Height, data.Training.Width));
        Assert.Equal(["a-coat", "b-shirt"], data.ClassNames);
        // a-coat/img0, b-shirt/img0, a-coat/img1, b-shirt/img1, a-coat/img2
        Assert.Equal([0, 1, 0, 1, 0], data.Training.Labels.ToArray().Select(l => (int)l));
        Assert.Equal(40 / 255f, data.Training.Images.Span[2 * 12]);
        Assert.Equal(11 / 255f, data.Training.Images.Span[11]);
    }

    [Fact]
    public void ColourImagesBecomeThreePlanes()
    {
        string root = _directory.File("rgb");
        WritePng(Path.Combine(root, "train", "x", "0.png"), 2, 2, ColorComponents.RedGreenBlue, p => (byte)p); // HWC: r0 g1 b2 r3 ...
        WritePng(Path.Combine(root, "train", "y", "0.png"), 2, 2, ColorComponents.Grey, p => 7);
        WritePng(Path.Combine(root, "test", "y", "0.png"), 2, 2, ColorComponents.Grey, p => 7);
        var data = DataDirectory.Load(root);
        Assert.Equal(3, data.Training.Channels);
        Assert.Equal([0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11], data.Training.Images.Span[..12].ToArray().Select(v => (int)Math.Round(v * 255)));
        Assert.Equal(Enumerable.Repeat(7, 12), data.Test.Images.Span.ToArray().Select(v => (int)Math.Round(v * 255)));
    }

    [Fact]
    public void BadImageFoldersNameTheFile()
    {
        string root = _directory.File("sizes");
        WritePng(Path.Combine(root, "train", "a", "0.png"), 4, 4, ColorComponents.Grey, p => 1);
        WritePng(Path.Combine(root, "train", "a", "1.png"), 5, 4, ColorComponents.Grey, p => 1);
        WritePng(Path.Combine(root, "test", "a", "0.png"), 4, 4, ColorComponents.Grey, p => 1);
        var error = Assert.Throws<DataFormatException>(() => DataDirectory.Load(root));
        Assert.Contains("1.png: 5x4 pixels, but", error.Message);

        string corrupt = _directory.File("corrupt");
        WritePng(Path.Combine(corrupt, "train", "a", "0.png"), 4, 4, ColorComponents.Grey, p => 1);
        Directory.CreateDirectory(Path.Combine(corrupt, "test", "a"));
        File.WriteAllText(Path.Combine(corrupt, "test", "a", "0.png"), "not a png");
        error = Assert.Throws<DataFormatException>(() => DataDirectory.Load(corrupt));
        Assert.Contains(Path.Combine("test", "a", "0.png"), error.Message);

        string stray = _directory.File("stray");
        WritePng(Path.Combine(stray, "train", "a", "0.png"), 4, 4, ColorComponents.Grey, p => 1);
        WritePng(Path.Combine(stray, "test", "z", "0.png"), 4, 4, ColorComponents.Grey, p => 1);
        error = Assert.Throws<DataFormatException>(() => DataDirectory.Load(stray));
        Assert.Contains("class folder(s) z", error.Message);

        // A class folder with no images would be an output never trained; hidden folders are no classes.
        string empty = _directory.File("empty");
        WritePng(Path.Combine(empty, "train", "a", "0.png"), 4, 4, ColorComponents.Grey, p => 1);
        WritePng(Path.Combine(empty, "test", "a", "0.png"), 4, 4, ColorComponents.Grey, p => 1);
        Directory.CreateDirectory(Path.Combine(empty, "train", "b"));
        File.WriteAllText(Path.Combine(empty, "train", "b", "notes.txt"), "");
        Directory.CreateDirectory(Path.Combine(empty, "train", ".ipynb_checkpoints"));
        Directory.CreateDirectory(Path.Combine(empty, "test", ".ipynb_checkpoints"));
        error = Assert.Throws<DataFormatException>(() => DataDirectory.Load(empty));
        Assert.EndsWith("class folder(s) b hold no images (.png, .jpg, .jpeg, .bmp)", error.Message);
        Directory.Delete(Path.Combine(empty, "train", "b"), recursive: true);
        Assert.Equal(["a"], DataDirectory.Load(empty).ClassNames);
    }

    [Fact]
    public void IdxClassesComeFromTheLabelsOrAreGiven()
    {
        File.WriteAllBytes(_directory.File("train-images-idx3-ubyte"), IdxTestFiles.Images(6, 2, 2, (n, i) => 0));
        File.WriteAllBytes(_directory.File("train-labels-idx1-ubyte"), IdxTestFiles.Labels(0, 1, 2, 3, 4, 2));
        File.WriteAllBytes(_directory.File("t10k-images-idx3-ubyte"), IdxTestFiles.Images(2, 2, 2, (n, i) => 0));
        File.WriteAllBytes(_directory.File("t10k-labels-idx1-ubyte"), IdxTestFiles.Labels(4, 0));
        Assert.Equal(5, DataDirectory.Load(_directory.Path).Training.Classes);
        Assert.Equal(12, DataDirectory.Load(_directory.Path, new DataOptions { Classes = 12 }).Test.Classes);
        File.WriteAllBytes(_directory.File("train-labels-idx1-ubyte"), IdxTestFiles.Labels(0, 1, 2, 3, 7, 2));
        var error = Assert.Throws<DataFormatException>(() => DataDirectory.Load(_directory.Path));
        Assert.Contains("record 4 has label 7, but no record has label 4", error.Message);
    }

    [Fact]
    public void AnUnknownDirectorySaysWhatWasLookedFor()
    {
        File.WriteAllText(_directory.File("notes.txt"), "hello");
        var error = Assert.Throws<DataFormatException>(() => DataDirectory.Load(_directory.Path));
        Assert.Contains("no data set found", error.Message);
        Assert.Contains(CifarBinary.Cifar10Archive, error.Message);
        Assert.Contains("train/<class>", error.Message);
    }
}
