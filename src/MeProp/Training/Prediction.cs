using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using MeProp.Models;
using MeProp.Tensors;

namespace MeProp.Training;

/// <summary>
/// Class probabilities from a model in evaluation mode (batch norm on its running statistics, no
/// dropout): the softmax of its logits, written into the caller's buffer or a fresh array, never into a
/// buffer the next call would overwrite.
/// </summary>
public static class Prediction
{
    /// <summary>
    /// Probabilities of <paramref name="images"/> [N, C, H, W] into <paramref name="probabilities"/>
    /// [N * classes], one row of <c>classes</c> values per image, each row summing to 1.
    /// </summary>
    public static void Predict(Sequential model, Tensor images, Span<float> probabilities)
    {
        var logits = model.Forward(images, training: false);
        int n = logits.Dim(0), classes = logits.Dim(1);
        if (probabilities.Length != n * classes)
            throw new ArgumentException($"probabilities holds {probabilities.Length} values; {n} images of {classes} classes need {n * classes}", nameof(probabilities));
        var all = logits.Span;
        for (int i = 0; i < n; i++) Softmax(all.Slice(i * classes, classes), probabilities.Slice(i * classes, classes));
    }

    /// <summary>Probabilities of <paramref name="images"/> [N, C, H, W] as a fresh [N * classes] array.</summary>
    public static float[] Predict(Sequential model, Tensor images)
    {
        int classes = model.OutputShape(images.Shape)[1];
        var probabilities = new float[images.Dim(0) * classes];
        Predict(model, images, probabilities);
        return probabilities;
    }

    /// <summary>Probabilities of one image of <paramref name="channels"/> x <paramref name="height"/> x <paramref name="width"/> values (CHW order).</summary>
    public static float[] Predict(Sequential model, ReadOnlySpan<float> image, int channels, int height, int width)
    {
        if (image.Length != channels * height * width)
            throw new ArgumentException($"the image holds {image.Length} values, {channels}x{height}x{width} needs {channels * height * width}", nameof(image));
        var batch = new Tensor(1, channels, height, width);
        image.CopyTo(batch.Span);
        return Predict(model, batch);
    }

    /// <summary>exp(x - max) / sum: the max taken out first so that large logits do not overflow.</summary>
    private static void Softmax(ReadOnlySpan<float> logits, Span<float> probabilities)
    {
        float max = TensorPrimitives.Max(logits);
        TensorPrimitives.Subtract(logits, max, probabilities);
        TensorPrimitives.Exp(probabilities, probabilities);
        TensorPrimitives.Divide(probabilities, TensorPrimitives.Sum(probabilities), probabilities);
    }
}
