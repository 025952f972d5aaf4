using System.Buffers.Binary;
using System.IO.Compression;

namespace MeProp.Tests.Data;

/// <summary>Builds small IDX files (and gzip copies) for the data tests.</summary>
internal static class IdxTestFiles
{
    /// <summary>An image file of count x height x width bytes; pixel (n, i) = pixel(n, i).</summary>
    public static byte[] Images(int count, int height, int width, Func<int, int, byte> pixel)
    {
        var bytes = new byte[16 + count * height * width];
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(0), 0x00000803);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), height);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), width);
        for (int n = 0; n < count; n++)
            for (int i = 0; i < height * width; i++)
                bytes[16 + n * height * width + i] = pixel(n, i);
        return bytes;
    }

    /// <summary>A label file holding <paramref name="labels"/>.</summary>
    public static byte[] Labels(params byte[] labels)
    {
        var bytes = new byte[8 + labels.Length];
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(0), 0x00000801);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), labels.Length);
        labels.CopyTo(bytes, 8);
        return bytes;
    }

    public static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest)) gzip.Write(data);
        return output.ToArray();
    }

    /// <summary>Writes a four-file MNIST-layout directory of tiny images; returns the bytes written by name.</summary>
    public static Dictionary<string, byte[]> WriteMnistLayout(string directory, int trainCount, int testCount,
        int height, int width)
    {
        var files = new Dictionary<string, byte[]>
        {
            ["train-images-idx3-ubyte"] = Images(trainCount, height, width, (n, i) => (byte)(n + i)),
            ["train-labels-idx1-ubyte"] = Labels(Enumerable.Range(0, trainCount).Select(n => (byte)(n % 10)).ToArray()),
            ["t10k-images-idx3-ubyte"] = Images(testCount, height, width, (n, i) => (byte)(3 * n + i)),
            ["t10k-labels-idx1-ubyte"] = Labels(Enumerable.Range(0, testCount).Select(n => (byte)(9 - n % 10)).ToArray()),
        };
        foreach ((string name, byte[] bytes) in files) File.WriteAllBytes(Path.Combine(directory, name), bytes);
        return files;
    }
}
