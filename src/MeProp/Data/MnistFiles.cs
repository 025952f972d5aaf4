namespace MeProp.Data;

/// <summary>The training and test sets of a data directory, with the names of their classes.</summary>
/// <param name="Training">All training images (split them with <see cref="DatasetSplit"/>).</param>
/// <param name="Test">The test images.</param>
/// <param name="ClassNames">One name per class, in label order (the label numbers themselves where the format names none).</param>
/// <param name="Format">Which layout the directory had: idx, cifar10, cifar100 or image-folder.</param>
public sealed record ImageData(Dataset Training, Dataset Test, IReadOnlyList<string> ClassNames, string Format);

public static class MnistFiles
{
    public const string TrainImages = "train-images-idx3-ubyte";
    public const string TrainLabels = "train-labels-idx1-ubyte";
    public const string TestImages = "t10k-images-idx3-ubyte";
    public const string TestLabels = "t10k-labels-idx1-ubyte";

    /// <summary>The four file names, uncompressed.</summary>
    public static IReadOnlyList<string> Names { get; } = [TrainImages, TrainLabels, TestImages, TestLabels];

    /// <summary>
    /// The full path of <paramref name="name"/> in <paramref name="directory"/>, or of name.gz when only that
    /// exists. Throws <see cref="DataFormatException"/> naming the full path when neither exists.
    /// </summary>
    public static string Find(string directory, string name)
    {
        string plain = Path.GetFullPath(Path.Combine(directory, name));
        if (File.Exists(plain)) return plain;
        if (File.Exists(plain + ".gz")) return plain + ".gz";
        throw new DataFormatException($"{plain}: file not found (nor {name}.gz)");
    }

    /// <summary>The classes of MNIST and of the data sets in its layout (Fashion-MNIST, KMNIST).</summary>
    public const int Classes = 10;

    /// <summary>Whether <paramref name="directory"/> holds the four files, plain or .gz.</summary>
    public static bool Present(string directory) =>
        Names.All(n => File.Exists(Path.Combine(directory, n)) || File.Exists(Path.Combine(directory, n + ".gz")));

    /// <summary>
    /// Loads the training and test sets; their images must have the same size. The classes are
    /// <paramref name="classes"/> when given (every label must be below it), otherwise the labels say how many
    /// there are (the largest training label + 1), and then every class must have a training example, so that
    /// a stray label (a 200 among digits) is an error naming its record rather than 191 empty classes.
    /// </summary>
    public static ImageData Load(string directory, int? classes = null)
    {
        string trainImages = Find(directory, TrainImages);
        string trainLabels = Find(directory, TrainLabels);
        string testImages = Find(directory, TestImages);
        string testLabels = Find(directory, TestLabels);
        // Files and sizes first, with every byte value allowed; then the classes and the labels against them.
        Dataset training = Dataset.LoadIdx(trainImages, trainLabels, classes ?? 256);
        Dataset test = Dataset.LoadIdx(testImages, testLabels, classes ?? 256);
        if (test.Height != training.Height || test.Width != training.Width)
            throw new DataFormatException(
                $"{testImages}: images are {test.Height}x{test.Width}, but the training images in {trainImages} are {training.Height}x{training.Width}");
        int classCount = classes ?? InferClasses(trainLabels, training.Labels.Span);
        int bad = test.Labels.Span.IndexOfAnyInRange((byte)classCount, byte.MaxValue);
        if (bad >= 0)
            throw new DataFormatException($"{testLabels}: record {bad} has label {test.Labels.Span[bad]}, outside the {classCount} classes 0-{classCount - 1} of {trainLabels}");
        return new ImageData(
            new Dataset(training.Images, training.Labels, 1, training.Height, training.Width, classCount),
            new Dataset(test.Images, test.Labels, 1, test.Height, test.Width, classCount),
            Enumerable.Range(0, classCount).Select(c => c.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(), "idx");
    }

    private static int InferClasses(string labelsPath, ReadOnlySpan<byte> labels)
    {
        int classes = 0;
        foreach (byte label in labels) classes = Math.Max(classes, label + 1);
        var seen = new bool[classes];
        foreach (byte label in labels) seen[label] = true;
        int missing = Array.IndexOf(seen, false);
        if (missing >= 0)
        {
            int record = labels.IndexOf((byte)(classes - 1));
            throw new DataFormatException($"{labelsPath}: record {record} has label {classes - 1}, but no record has label {missing}: " +
                                          $"the labels do not name {classes} classes 0-{classes - 1} (a corrupt label, or give the number of classes explicitly)");
        }
        return classes;
    }
}
