using System.Formats.Tar;
using System.IO.Compression;

namespace MeProp.Data;

/// <summary>
/// The CIFAR-10 and CIFAR-100 binary versions, as distributed: records of label byte(s) followed by
/// 3 x 32 x 32 pixel bytes (the red plane, then green, then blue, each row-major), which is NCHW as it
/// stands. CIFAR-10: data_batch_1..5.bin and test_batch.bin (1 label byte, 10 classes, names in
/// batches.meta.txt); CIFAR-100: train.bin and test.bin (a coarse label of 20 classes, then a fine one of
/// 100; names in coarse_label_names.txt and fine_label_names.txt). The files may sit in the directory, in
/// the archive's folder (cifar-10-batches-bin/, cifar-100-binary/), or in the .tar.gz archive itself.
/// </summary>
public static class CifarBinary
{
    public const int Channels = 3, Height = 32, Width = 32, ImageBytes = Channels * Height * Width;

    public static readonly string[] Cifar10Training = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
    public const string Cifar10Test = "test_batch.bin", Cifar10Folder = "cifar-10-batches-bin", Cifar10Archive = "cifar-10-binary.tar.gz";
    public const string Cifar100Training = "train.bin", Cifar100Test = "test.bin", Cifar100Folder = "cifar-100-binary", Cifar100Archive = "cifar-100-binary.tar.gz";

    /// <summary>Where the CIFAR-10 files of <paramref name="directory"/> are: the folder holding them, the archive, or null.</summary>
    public static string? FindCifar10(string directory) => Find(directory, [.. Cifar10Training, Cifar10Test], Cifar10Folder, Cifar10Archive);

    /// <summary>Where the CIFAR-100 files of <paramref name="directory"/> are: the folder holding them, the archive, or null.</summary>
    public static string? FindCifar100(string directory) => Find(directory, [Cifar100Training, Cifar100Test], Cifar100Folder, Cifar100Archive);

    private static string? Find(string directory, string[] files, string folder, string archive)
    {
        if (files.All(f => File.Exists(Path.Combine(directory, f)))) return directory;
        string inner = Path.Combine(directory, folder);
        if (files.All(f => File.Exists(Path.Combine(inner, f)))) return inner;
        string packed = Path.Combine(directory, archive);
        return File.Exists(packed) ? packed : null;
    }

    /// <summary>Loads CIFAR-10 from a folder or archive found by <see cref="FindCifar10"/>.</summary>
    public static ImageData LoadCifar10(string location)
    {
        var files = ReadAll(location, [.. Cifar10Training, Cifar10Test, "batches.meta.txt"], optional: "batches.meta.txt");
        var names = Names(files.GetValueOrDefault("batches.meta.txt"), 10);
        var training = Records(Cifar10Training.Select(f => (Path.Combine(location, f), files[f])).ToList(), labelBytes: 1, labelIndex: 0, classes: 10);
        var test = Records([(Path.Combine(location, Cifar10Test), files[Cifar10Test])], labelBytes: 1, labelIndex: 0, classes: 10);
        return new ImageData(training, test, names, "cifar10");
    }

    /// <summary>Loads CIFAR-100 with its fine labels (100 classes) or coarse ones (20 superclasses).</summary>
    public static ImageData LoadCifar100(string location, bool coarse)
    {
        string namesFile = coarse ? "coarse_label_names.txt" : "fine_label_names.txt";
        var files = ReadAll(location, [Cifar100Training, Cifar100Test, namesFile], optional: namesFile);
        int classes = coarse ? 20 : 100;
        var names = Names(files.GetValueOrDefault(namesFile), classes);
        var training = Records([(Path.Combine(location, Cifar100Training), files[Cifar100Training])], 2, coarse ? 0 : 1, classes);
        var test = Records([(Path.Combine(location, Cifar100Test), files[Cifar100Test])], 2, coarse ? 0 : 1, classes);
        return new ImageData(training, test, names, "cifar100");
    }

    /// <summary>The named files' bytes, from a folder or from a .tar.gz (matched by file name, whatever folder they are in).</summary>
    private static Dictionary<string, byte[]> ReadAll(string location, string[] names, string optional)
    {
        var files = new Dictionary<string, byte[]>();
        if (Directory.Exists(location))
        {
            foreach (string name in names)
            {
                string path = Path.Combine(location, name);
                if (File.Exists(path)) files[name] = File.ReadAllBytes(path);
            }
        }
        else
        {
            try
            {
                using var gzip = new GZipStream(File.OpenRead(location), CompressionMode.Decompress);
                using var tar = new TarReader(gzip);
                while (tar.GetNextEntry() is { } entry)
                {
                    string name = Path.GetFileName(entry.Name);
                    if (entry.EntryType is TarEntryType.RegularFile or TarEntryType.V7RegularFile && names.Contains(name) && entry.DataStream is { } data)
                    {
                        using var bytes = new MemoryStream();
                        data.CopyTo(bytes);
                        files[name] = bytes.ToArray();
                    }
                }
            }
            catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
            {
                throw new DataFormatException($"{location}: not a readable .tar.gz archive ({e.Message})", e);
            }
        }
        var missing = names.Where(n => n != optional && !files.ContainsKey(n)).ToList();
        if (missing.Count > 0) throw new DataFormatException($"{location}: {string.Join(", ", missing)} missing");
        return files;
    }

    private static IReadOnlyList<string> Names(byte[]? text, int classes)
    {
        var names = text is null ? [] : System.Text.Encoding.UTF8.GetString(text).Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return names.Length == classes ? names : Enumerable.Range(0, classes).Select(c => c.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
    }

    /// <summary>Decodes records of <paramref name="labelBytes"/> label bytes and 3072 pixel bytes, checking sizes and labels.</summary>
    private static Dataset Records(List<(string Path, byte[] Bytes)> files, int labelBytes, int labelIndex, int classes)
    {
        int recordBytes = labelBytes + ImageBytes;
        foreach (var (path, bytes) in files)
        {
            if (bytes.Length == 0 || bytes.Length % recordBytes != 0)
                throw new DataFormatException($"{path}: {bytes.Length} bytes is not a whole number of {recordBytes}-byte records (truncated or not a CIFAR binary file)");
        }
        int count = files.Sum(f => f.Bytes.Length / recordBytes);
        var pixels = new float[(long)count * ImageBytes];
        var labels = new byte[count];
        int image = 0;
        foreach (var (path, bytes) in files)
        {
            for (int record = 0; record < bytes.Length / recordBytes; record++, image++)
            {
                int at = record * recordBytes;
                byte label = bytes[at + labelIndex];
                if (label >= classes)
                    throw new DataFormatException($"{path}: record {record} has label {label}, outside the {classes} classes 0-{classes - 1}");
                labels[image] = label;
                var source = bytes.AsSpan(at + labelBytes, ImageBytes);
                var target = pixels.AsSpan(image * ImageBytes, ImageBytes);
                for (int i = 0; i < ImageBytes; i++) target[i] = source[i] / 255f;
            }
        }
        return new Dataset(pixels, labels, Channels, Height, Width, classes);
    }
}
