namespace MeProp.Data;

/// <summary>
/// An in-memory image classification data set: <see cref="Count"/> images of <see cref="Channels"/> x
/// <see cref="Height"/> x <see cref="Width"/> values with one label byte each, below <see cref="Classes"/>.
/// <see cref="Slice"/> gives a contiguous sub-range that shares the memory, so splits copy nothing.
/// </summary>
public sealed class Dataset
{
    /// <summary>
    /// Wraps images and labels (not copied).
    /// </summary>
    /// <param name="images">Count x Channels x Height x Width pixel values, NCHW, one image after another.</param>
    /// <param name="labels">Count class labels, each below <paramref name="classes"/> (not checked here: loaders check it with the file's name).</param>
    /// <param name="channels">Channels per image, at least 1.</param>
    /// <param name="height">Image height in pixels, at least 1.</param>
    /// <param name="width">Image width in pixels, at least 1.</param>
    /// <param name="classes">Number of classes, at least 1.</param>
    public Dataset(ReadOnlyMemory<float> images, ReadOnlyMemory<byte> labels, int channels, int height, int width, int classes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(channels, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 1);
        if (images.Length != (long)labels.Length * channels * height * width)
            throw new ArgumentException(
                $"{labels.Length} labels of {channels}x{height}x{width} images need {(long)labels.Length * channels * height * width} pixel values, got {images.Length}");
        Images = images;
        Labels = labels;
        Channels = channels;
        Height = height;
        Width = width;
        Classes = classes;
    }

    /// <summary>Pixel values, Count x Channels x Height x Width, in [0, 1] when loaded from IDX files.</summary>
    public ReadOnlyMemory<float> Images { get; }

    /// <summary>One class label per image.</summary>
    public ReadOnlyMemory<byte> Labels { get; }

    /// <summary>Number of images.</summary>
    public int Count => Labels.Length;

    public int Channels { get; }

    /// <summary>Number of classes; every label is below it.</summary>
    public int Classes { get; }

    /// <summary>Image height in pixels.</summary>
    public int Height { get; }

    /// <summary>Image width in pixels.</summary>
    public int Width { get; }

    /// <summary>Values per image: Channels x Height x Width.</summary>
    public int ImageSize => Channels * Height * Width;

    /// <summary>Images [start, start + count) and their labels, sharing this data set's memory.</summary>
    public Dataset Slice(int start, int count)
    {
        if ((uint)start > (uint)Count || (uint)count > (uint)(Count - start))
            throw new ArgumentOutOfRangeException(nameof(count), $"images [{start}, {start}+{count}) are outside a data set of {Count}");
        return new Dataset(Images.Slice(start * ImageSize, count * ImageSize), Labels.Slice(start, count), Channels, Height, Width, Classes);
    }

    /// <summary>
    /// Per-channel mean and (population) standard deviation of the pixel values, accumulated in float64:
    /// what an input normalisation computed on the training split uses.
    /// </summary>
    public (float[] Mean, float[] Std) ChannelStatistics()
    {
        var sum = new double[Channels];
        var squares = new double[Channels];
        int plane = Height * Width;
        var images = Images.Span;
        for (int n = 0; n < Count; n++)
            for (int c = 0; c < Channels; c++)
                foreach (float v in images.Slice((n * Channels + c) * plane, plane))
                {
                    sum[c] += v;
                    squares[c] += (double)v * v;
                }
        double count = (double)Count * plane;
        var mean = sum.Select(s => (float)(s / count)).ToArray();
        var std = squares.Select((q, c) => (float)Math.Sqrt(Math.Max(q / count - (sum[c] / count) * (sum[c] / count), 0))).ToArray();
        return (mean, std);
    }

    /// <summary>
    /// Loads an IDX image file and its label file (plain or gzip), scaling pixels to [0, 1] by /255.
    /// Throws <see cref="DataFormatException"/> when either file is bad, holds no images, their counts
    /// differ, or a label is not below <paramref name="classes"/> (naming the first such record).
    /// </summary>
    public static Dataset LoadIdx(string imagesPath, string labelsPath, int classes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 1);
        IdxImages images = IdxFile.ReadImages(imagesPath);
        byte[] labels = IdxFile.ReadLabels(labelsPath);
        if (labels.Length != images.Count)
            throw new DataFormatException($"{labelsPath}: {labels.Length} labels, but {imagesPath} has {images.Count} images");
        if (images.Count == 0) throw new DataFormatException($"{imagesPath}: holds no images");
        int bad = Array.FindIndex(labels, label => label >= classes);
        if (bad >= 0)
            throw new DataFormatException($"{labelsPath}: record {bad} has label {labels[bad]}, outside the {classes} classes 0-{classes - 1}");

        var pixels = new float[images.Pixels.Length];
        byte[] source = images.Pixels;
        for (int i = 0; i < pixels.Length; i++) pixels[i] = source[i] / 255f;
        return new Dataset(pixels, labels, 1, images.Height, images.Width, classes);
    }
}
