namespace MeProp.Data;

/// <summary>
/// A directory of image files in torchvision's ImageFolder layout: train/&lt;class&gt;/*.png|jpg|jpeg|bmp and
/// test/&lt;class&gt;/*, the classes being the train/ folder's sub-folders sorted by name (ordinal; hidden folders such as
/// .ipynb_checkpoints are none, and each class must hold training images), decoded by
/// StbImageSharp (managed code, no native library). Every image must have the first one's size (an image of
/// another size is an error naming it: resize them beforehand); the set is grey-scale (1 channel) when every
/// image is, RGB (3) otherwise. The examples are ordered by file name, then class, so that an exported data
/// set (files named by index) keeps its order and a folder with alike names interleaves its classes, and the
/// first N images — the dev split — hold every class.
/// </summary>
public static class ImageFolder
{
    public const string TrainFolder = "train", TestFolder = "test";
    private static readonly string[] Extensions = ImageFiles.Extensions;

    /// <summary>Whether <paramref name="directory"/> has train/ and test/ folders with class sub-folders.</summary>
    public static bool Present(string directory) =>
        Directory.Exists(Path.Combine(directory, TrainFolder)) && Directory.Exists(Path.Combine(directory, TestFolder))
        && ClassFolders(Path.Combine(directory, TrainFolder)).Any();

    public static ImageData Load(string directory)
    {
        string trainRoot = Path.Combine(directory, TrainFolder), testRoot = Path.Combine(directory, TestFolder);
        var classes = ClassFolders(trainRoot).Order(StringComparer.Ordinal).ToArray();
        if (classes.Length is 0 or > 256)
            throw new DataFormatException($"{trainRoot}: {classes.Length} class folders; 1 to 256 are supported");
        var stray = ClassFolders(testRoot).Where(c => !classes.Contains(c)).ToList();
        if (stray.Count > 0)
            throw new DataFormatException($"{testRoot}: class folder(s) {string.Join(", ", stray)} have no counterpart in {trainRoot}");
        var trainFiles = Files(trainRoot, classes);
        var testFiles = Files(testRoot, classes);
        if (trainFiles.Count == 0) throw new DataFormatException($"{trainRoot}: no images ({string.Join(", ", Extensions)}) in the class folders");
        // A class without training images would be an output the network never learns (torchvision refuses it too).
        var empty = classes.Where((_, label) => !trainFiles.Any(f => f.Label == label)).ToList();
        if (empty.Count > 0)
            throw new DataFormatException($"{trainRoot}: class folder(s) {string.Join(", ", empty)} hold no images ({string.Join(", ", Extensions)})");
        if (testFiles.Count == 0) throw new DataFormatException($"{testRoot}: no images ({string.Join(", ", Extensions)}) in the class folders");

        // The headers first: the size every image must have, and whether any is in colour.
        var first = ImageFiles.Info(trainFiles[0].Path);
        bool colour = false;
        foreach (var (path, _) in trainFiles.Concat(testFiles))
        {
            var info = ImageFiles.Info(path);
            if (info.Width != first.Width || info.Height != first.Height)
                throw new DataFormatException($"{path}: {info.Width}x{info.Height} pixels, but {trainFiles[0].Path} is {first.Width}x{first.Height}; every image must have one size (resize them first)");
            colour |= info.Colour;
        }
        int channels = colour ? 3 : 1;
        return new ImageData(Decode(trainFiles, channels, first.Height, first.Width, classes.Length), Decode(testFiles, channels, first.Height, first.Width, classes.Length), classes!, "image-folder");
    }

    /// <summary>The sub-folders of <paramref name="root"/> that are classes: all but hidden ones (".ipynb_checkpoints", ".git").</summary>
    private static IEnumerable<string> ClassFolders(string root) =>
        Directory.GetDirectories(root).Select(d => Path.GetFileName(d)!).Where(name => !name.StartsWith('.'));

    /// <summary>
    /// The images of every class folder, ordered by file name and then by class: files named by an index
    /// keep that order (an exported data set loads back as it was), and folders named alike (img001.png in
    /// each class) interleave their classes.
    /// </summary>
    private static List<(string Path, byte Label)> Files(string root, string?[] classes)
    {
        var all = new List<(string Path, byte Label)>();
        for (int label = 0; label < classes.Length; label++)
        {
            string folder = Path.Combine(root, classes[label]!);
            if (!Directory.Exists(folder)) continue;
            foreach (string file in Directory.GetFiles(folder).Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant())))
                all.Add((file, (byte)label));
        }
        return all.OrderBy(f => Path.GetFileName(f.Path), StringComparer.Ordinal).ThenBy(f => f.Label).ToList();
    }

    private static Dataset Decode(List<(string Path, byte Label)> files, int channels, int height, int width, int classes)
    {
        int imageValues = channels * height * width;
        var pixels = new float[(long)files.Count * imageValues];
        var labels = new byte[files.Count];
        for (int n = 0; n < files.Count; n++)
        {
            ImageFiles.Decode(files[n].Path, channels, pixels.AsSpan(n * imageValues, imageValues));
            labels[n] = files[n].Label;
        }
        return new Dataset(pixels, labels, channels, height, width, classes);
    }
}
