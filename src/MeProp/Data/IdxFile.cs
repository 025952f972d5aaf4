using System.Buffers.Binary;
using System.IO.Compression;

namespace MeProp.Data;

/// <summary>
/// The pixels of an IDX image file: <see cref="Count"/> images of <see cref="Height"/> x <see cref="Width"/>
/// bytes, row-major, one image after another (Count x Height x Width).
/// </summary>
public sealed record IdxImages(byte[] Pixels, int Count, int Height, int Width);

/// <summary>
/// Reads the IDX files MNIST ships in: a big-endian header (magic 0x0000TTDD, with element type TT and
/// dimension count DD, then DD int32 sizes) followed by exactly the bytes the sizes call for. Only
/// unsigned-byte files are read: images (3 dimensions) and labels (1 dimension). A file starting with the
/// gzip magic bytes 1f 8b is decompressed, whatever its name. Every problem is a
/// <see cref="DataFormatException"/> whose one-line message starts with the file path.
/// </summary>
public static class IdxFile
{
    /// <summary>Magic of an unsigned-byte file with 3 dimensions (count, rows, columns).</summary>
    public const int ImagesMagic = 0x00000803;

    /// <summary>Magic of an unsigned-byte file with 1 dimension (count).</summary>
    public const int LabelsMagic = 0x00000801;

    private const byte UnsignedByteType = 0x08;

    /// <summary>Reads an image file (magic 0x00000803): N x H x W pixel bytes.</summary>
    public static IdxImages ReadImages(string path)
    {
        byte[] pixels = ReadUnsignedBytes(path, ImagesMagic, "bytes of pixels", out int[] sizes);
        if (sizes[1] == 0 || sizes[2] == 0)
            throw Error(path, $"images of {sizes[1]}x{sizes[2]} pixels: height and width must be at least 1");
        return new IdxImages(pixels, sizes[0], sizes[1], sizes[2]);
    }

    /// <summary>Reads a label file (magic 0x00000801): N label bytes, any values.</summary>
    public static byte[] ReadLabels(string path) => ReadUnsignedBytes(path, LabelsMagic, "bytes of labels", out _);

    /// <summary>
    /// Opens a file for reading, through a <see cref="GZipStream"/> when it starts with 1f 8b.
    /// The caller disposes the returned stream.
    /// </summary>
    private static Stream OpenMaybeGzip(string path, out bool isGzip)
    {
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        Span<byte> start = stackalloc byte[2];
        int read = file.ReadAtLeast(start, 2, throwOnEndOfStream: false);
        file.Position = 0;
        isGzip = read == 2 && start[0] == 0x1f && start[1] == 0x8b;
        return isGzip ? new GZipStream(file, CompressionMode.Decompress) : file;
    }

    private static byte[] ReadUnsignedBytes(string path, int expectedMagic, string contentName, out int[] sizes)
    {
        bool isGzip = false;
        try
        {
            using Stream stream = OpenMaybeGzip(path, out isGzip);
            string decompressed = isGzip ? " (after gzip decompression)" : "";

            Span<byte> word = stackalloc byte[4];
            int magicBytes = stream.ReadAtLeast(word, 4, throwOnEndOfStream: false);
            if (magicBytes < 4)
                throw Error(path, $"truncated: {magicBytes} bytes{decompressed}, too short for the 4-byte IDX magic");
            int magic = BinaryPrimitives.ReadInt32BigEndian(word);
            CheckMagic(path, magic, expectedMagic);

            int dimensionCount = expectedMagic & 0xff;
            sizes = new int[dimensionCount];
            long byteCount = 1;
            for (int d = 0; d < dimensionCount; d++)
            {
                if (stream.ReadAtLeast(word, 4, throwOnEndOfStream: false) < 4)
                    throw Error(path, $"truncated: file ends inside the header, at dimension {d + 1} of {dimensionCount}");
                sizes[d] = BinaryPrimitives.ReadInt32BigEndian(word);
                if (sizes[d] < 0)
                    throw Error(path, $"dimension {d + 1} of {dimensionCount} is negative ({sizes[d]}) in the header");
                // Held at most one past the limit, so that no product of the sizes wraps around.
                byteCount = Math.Min(byteCount * sizes[d], Array.MaxLength + 1L);
            }
            if (byteCount > Array.MaxLength)
                throw Error(path, $"header says {string.Join("x", sizes)} {contentName}, more than one array can hold");
            string header = $"header says {string.Join("x", sizes)} = {byteCount} {contentName}";

            var data = new byte[byteCount];
            int dataBytes = stream.ReadAtLeast(data, data.Length, throwOnEndOfStream: false);
            if (dataBytes < data.Length)
                throw Error(path, $"truncated: {header}, file has {dataBytes} after the header{decompressed}");
            long trailingBytes = CountRemainingBytes(stream);
            if (trailingBytes > 0)
                throw Error(path, $"trailing bytes: {header}, file has {byteCount + trailingBytes} after the header{decompressed}");
            return data;
        }
        catch (InvalidDataException e) when (isGzip)
        {
            throw Error(path, $"corrupt gzip data: {e.Message}", e);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw Error(path, "file not found", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Error(path, $"cannot read: {e.Message}", e);
        }
    }

    private static void CheckMagic(string path, int magic, int expectedMagic)
    {
        int expectedDimensions = expectedMagic & 0xff;
        string expectedKind = expectedMagic == ImagesMagic ? "an image file" : "a label file";
        if ((magic >>> 16) != 0)
            throw Error(path, $"not an IDX file: magic 0x{magic:X8}, expected 0x{expectedMagic:X8} for {expectedKind}");
        int type = (magic >> 8) & 0xff;
        if (type != UnsignedByteType)
            throw Error(path, $"element type 0x{type:X2} (magic 0x{magic:X8}) is not supported, expected 0x08 (unsigned byte)");
        int dimensions = magic & 0xff;
        if (dimensions != expectedDimensions)
            throw Error(path, $"{dimensions} dimensions (magic 0x{magic:X8}), expected {expectedDimensions} for {expectedKind} (magic 0x{expectedMagic:X8})");
    }

    private static long CountRemainingBytes(Stream stream)
    {
        Span<byte> buffer = stackalloc byte[4096];
        long total = 0;
        int read;
        while ((read = stream.Read(buffer)) > 0) total += read;
        return total;
    }

    private static DataFormatException Error(string path, string what, Exception? inner = null) =>
        inner is null ? new DataFormatException($"{path}: {what}") : new DataFormatException($"{path}: {what}", inner);
}
