namespace MeProp.Data;

/// <summary>
/// The training images split into a development set (the first <c>devSize</c> images) and a training set
/// (the rest), as TensorFlow's MNIST loader and the meProp code do: 5,000 dev and 55,000 train for MNIST.
/// </summary>
/// <param name="Train">Training images, after the dev images.</param>
/// <param name="Dev">Development images, or null when the dev size is 0.</param>
public sealed record DatasetSplit(Dataset Train, Dataset? Dev)
{
    /// <summary>The dev size TensorFlow's loader uses.</summary>
    public const int DefaultDevSize = 5000;

    /// <summary>
    /// Splits <paramref name="training"/> without copying: dev = images [0, devSize), train = the images
    /// after them, or only the first <paramref name="maxTrain"/> of those when given.
    /// </summary>
    /// <param name="training">The full training set.</param>
    /// <param name="devSize">0 (no dev set) up to <c>training.Count - 1</c>.</param>
    /// <param name="maxTrain">When set, 1 up to the number of images left after the dev set.</param>
    public static DatasetSplit Create(Dataset training, int devSize = DefaultDevSize, int? maxTrain = null)
    {
        if (devSize < 0 || devSize >= training.Count)
            throw new ArgumentOutOfRangeException(nameof(devSize),
                $"dev size {devSize} must be at least 0 and less than the {training.Count} training images");
        int remaining = training.Count - devSize;
        int trainCount = maxTrain ?? remaining;
        if (trainCount < 1 || trainCount > remaining)
            throw new ArgumentOutOfRangeException(nameof(maxTrain),
                $"max train {trainCount} must be between 1 and the {remaining} images left after {devSize} dev images");
        Dataset? dev = devSize == 0 ? null : training.Slice(0, devSize);
        return new DatasetSplit(training.Slice(devSize, trainCount), dev);
    }
}
