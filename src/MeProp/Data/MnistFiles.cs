namespace MeProp.Data;

/// <summary>The training and test sets of a directory in the MNIST layout.</summary>
/// <param name="Training">All training images (split them with <see cref="DatasetSplit"/>).</param>
/// <param name="Test">The test images.</param>
public sealed record MnistData(Dataset Training, Dataset Test);

/// <summary>
/// Loads a directory holding the four IDX files under their standard MNIST names, each plain or with a
/// .gz suffix. Any images of one size work (Fashion-MNIST, KMNIST, ...), not only MNIST.
/// </summary>
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

    /// <summary>Loads the training and test sets; their images must have the same size and their labels be below <see cref="Classes"/>.</summary>
    public static MnistData Load(string directory)
    {
        string trainImages = Find(directory, TrainImages);
        string trainLabels = Find(directory, TrainLabels);
        string testImages = Find(directory, TestImages);
        string testLabels = Find(directory, TestLabels);
        Dataset training = Dataset.LoadIdx(trainImages, trainLabels, Classes);
        Dataset test = Dataset.LoadIdx(testImages, testLabels, Classes);
        if (test.Height != training.Height || test.Width != training.Width)
            throw new DataFormatException(
                $"{testImages}: images are {test.Height}x{test.Width}, but the training images in {trainImages} are {training.Height}x{training.Width}");
        return new MnistData(training, test);
    }
}
