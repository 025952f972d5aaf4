using System.Buffers.Binary;
using MeProp.Data;

namespace MeProp.Tests.Data;

public sealed class IdxFileTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    private string Write(string name, byte[] bytes)
    {
        string path = _directory.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static DataFormatException AssertOneLineError(string path, Action read, string expectedFragment)
    {
        var error = Assert.Throws<DataFormatException>(read);
        Assert.StartsWith(path + ": ", error.Message);
        Assert.DoesNotContain('\n', error.Message);
        Assert.Contains(expectedFragment, error.Message);
        return error;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReadImages_RoundTripsPlainAndGzip(bool gzip)
    {
        byte[] file = IdxTestFiles.Images(3, 4, 5, (n, i) => (byte)(n * 20 + i));
        // No .gz suffix on the gzip file: detection goes by the magic bytes.
        string path = Write("images", gzip ? IdxTestFiles.Gzip(file) : file);

        IdxImages images = IdxFile.ReadImages(path);

        Assert.Equal((3, 4, 5), (images.Count, images.Height, images.Width));
        Assert.Equal(file[16..], images.Pixels);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReadLabels_RoundTripsAnyByteValue(bool gzip)
    {
        byte[] file = IdxTestFiles.Labels(0, 9, 10, 255);
        string path = Write("labels.gz", gzip ? IdxTestFiles.Gzip(file) : file);

        Assert.Equal(new byte[] { 0, 9, 10, 255 }, IdxFile.ReadLabels(path));
    }

    [Fact]
    public void ReadImages_ZeroImages_IsEmpty()
    {
        string path = Write("images", IdxTestFiles.Images(0, 28, 28, (_, _) => 0));

        IdxImages images = IdxFile.ReadImages(path);

        Assert.Equal((0, 28, 28), (images.Count, images.Height, images.Width));
        Assert.Empty(images.Pixels);
    }

    [Fact]
    public void ReadImages_LabelFile_ReportsDimensionCount()
    {
        string path = Write("labels", IdxTestFiles.Labels(1, 2, 3));

        AssertOneLineError(path, () => IdxFile.ReadImages(path),
            "1 dimensions (magic 0x00000801), expected 3 for an image file (magic 0x00000803)");
    }

    [Fact]
    public void ReadLabels_ImageFile_ReportsDimensionCount()
    {
        string path = Write("images", IdxTestFiles.Images(1, 2, 2, (_, _) => 0));

        AssertOneLineError(path, () => IdxFile.ReadLabels(path), "3 dimensions (magic 0x00000803), expected 1");
    }

    [Fact]
    public void ReadImages_NotIdx_ReportsMagic()
    {
        string path = Write("images", "hello, world, this is text"u8.ToArray());

        AssertOneLineError(path, () => IdxFile.ReadImages(path), "not an IDX file: magic 0x68656C6C, expected 0x00000803");
    }

    [Fact]
    public void ReadImages_FloatElementType_IsNotSupported()
    {
        byte[] file = IdxTestFiles.Images(1, 1, 1, (_, _) => 0);
        BinaryPrimitives.WriteInt32BigEndian(file, 0x00000D03);
        string path = Write("images", file);

        AssertOneLineError(path, () => IdxFile.ReadImages(path), "element type 0x0D (magic 0x00000D03) is not supported");
    }

    [Theory]
    [InlineData(false, "")]
    [InlineData(true, " (after gzip decompression)")]
    public void ReadImages_TruncatedPixels_SaysHowManyBytesThereAre(bool gzip, string suffix)
    {
        byte[] file = IdxTestFiles.Images(3, 4, 5, (_, _) => 7)[..(16 + 10)];
        string path = Write("train-images-idx3-ubyte", gzip ? IdxTestFiles.Gzip(file) : file);

        AssertOneLineError(path, () => IdxFile.ReadImages(path),
            $"truncated: header says 3x4x5 = 60 bytes of pixels, file has 10 after the header{suffix}");
    }

    [Fact]
    public void ReadImages_TruncatedHeader_SaysWhere()
    {
        string path = Write("images", IdxTestFiles.Images(3, 4, 5, (_, _) => 7)[..10]);

        AssertOneLineError(path, () => IdxFile.ReadImages(path), "truncated: file ends inside the header, at dimension 2 of 3");
    }

    [Fact]
    public void ReadLabels_ShorterThanMagic_IsTruncated()
    {
        string path = Write("labels", [0, 0]);

        AssertOneLineError(path, () => IdxFile.ReadLabels(path), "truncated: 2 bytes, too short for the 4-byte IDX magic");
    }

    [Theory]
    [InlineData(false, "")]
    [InlineData(true, " (after gzip decompression)")]
    public void ReadLabels_TrailingBytes_AreAnError(bool gzip, string suffix)
    {
        byte[] file = [.. IdxTestFiles.Labels(1, 2, 3), 0, 0];
        string path = Write("labels", gzip ? IdxTestFiles.Gzip(file) : file);

        AssertOneLineError(path, () => IdxFile.ReadLabels(path),
            $"trailing bytes: header says 3 = 3 bytes of labels, file has 5 after the header{suffix}");
    }

    [Fact]
    public void ReadImages_NegativeDimension_IsAnError()
    {
        byte[] file = IdxTestFiles.Images(1, 2, 2, (_, _) => 0);
        BinaryPrimitives.WriteInt32BigEndian(file.AsSpan(8), -2);
        string path = Write("images", file);

        AssertOneLineError(path, () => IdxFile.ReadImages(path), "dimension 2 of 3 is negative (-2)");
    }

    [Theory]
    [InlineData(1 << 21, 1 << 21, 1 << 22)]   // 2^64 bytes: a product kept in 64 bits would wrap to 0
    [InlineData(int.MaxValue, int.MaxValue, int.MaxValue)]
    [InlineData(1 << 16, 1 << 8, 1 << 7)]   // 2^31 bytes, one past what an array holds
    public void ReadImages_SizesBeyondAnArray_AreAnError(int count, int height, int width)
    {
        byte[] file = IdxTestFiles.Images(1, 2, 2, (_, _) => 0);
        BinaryPrimitives.WriteInt32BigEndian(file.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(file.AsSpan(8), height);
        BinaryPrimitives.WriteInt32BigEndian(file.AsSpan(12), width);
        string path = Write("images", file);

        AssertOneLineError(path, () => IdxFile.ReadImages(path), $"header says {count}x{height}x{width} bytes of pixels, more than one array can hold");
    }

    [Fact]
    public void ReadImages_ZeroWidth_IsAnError()
    {
        string path = Write("images", IdxTestFiles.Images(2, 3, 0, (_, _) => 0));

        AssertOneLineError(path, () => IdxFile.ReadImages(path), "images of 3x0 pixels");
    }

    [Fact]
    public void ReadImages_CorruptGzip_IsAnError()
    {
        string path = Write("images.gz", [0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x03, 0xff, 0xff, 0xff]);

        Assert.Throws<DataFormatException>(() => IdxFile.ReadImages(path));
    }

    [Fact]
    public void ReadImages_TruncatedGzipStream_IsAnError()
    {
        byte[] compressed = IdxTestFiles.Gzip(IdxTestFiles.Images(20, 8, 8, (n, i) => (byte)(n * i)));
        string path = Write("images.gz", compressed[..(compressed.Length / 2)]);

        var error = Assert.Throws<DataFormatException>(() => IdxFile.ReadImages(path));
        Assert.StartsWith(path + ": ", error.Message);
    }

    [Fact]
    public void ReadImages_MissingFile_NamesThePath()
    {
        string path = _directory.File("no-such-file");

        AssertOneLineError(path, () => IdxFile.ReadImages(path), "file not found");
    }
}
