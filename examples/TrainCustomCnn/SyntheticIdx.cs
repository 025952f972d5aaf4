using System.Buffers.Binary;

namespace TrainCustomCnn;

/// <summary>
/// A tiny MNIST-layout data set for runs without MNIST (CI): 28x28 images of 10 classes, class c a bright
/// 5x5 square at its own place (two rows of five), moved by up to 2 pixels, on faint noise. A small CNN
/// learns it within an epoch of a few hundred images. Labels cycle 0-9, so every class is present.
/// </summary>
static class SyntheticIdx
{
    private const int Size = 28, Classes = 10;

    public static void Write(string directory, int trainCount, int testCount, ulong seed)
    {
        Directory.CreateDirectory(directory);
        var random = new Random(unchecked((int)seed));
        WriteSet(directory, "train", trainCount, random);
        WriteSet(directory, "t10k", testCount, random);
    }

    private static void WriteSet(string directory, string prefix, int count, Random random)
    {
        var images = new byte[16 + count * Size * Size];
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(0), 0x00000803);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(8), Size);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(12), Size);
        var labels = new byte[8 + count];
        BinaryPrimitives.WriteInt32BigEndian(labels.AsSpan(0), 0x00000801);
        BinaryPrimitives.WriteInt32BigEndian(labels.AsSpan(4), count);
        for (int n = 0; n < count; n++)
        {
            int label = n % Classes;
            labels[8 + n] = (byte)label;
            var image = images.AsSpan(16 + n * Size * Size, Size * Size);
            for (int i = 0; i < image.Length; i++) image[i] = (byte)random.Next(0, 40);
            int top = 4 + 12 * (label / 5) + random.Next(-2, 3), left = 1 + 5 * (label % 5) + random.Next(-1, 2);
            for (int y = Math.Max(0, top); y < Math.Min(Size, top + 5); y++)
                for (int x = Math.Max(0, left); x < Math.Min(Size, left + 5); x++)
                    image[y * Size + x] = (byte)random.Next(200, 256);
        }
        File.WriteAllBytes(Path.Combine(directory, $"{prefix}-images-idx3-ubyte"), images);
        File.WriteAllBytes(Path.Combine(directory, $"{prefix}-labels-idx1-ubyte"), labels);
    }
}
