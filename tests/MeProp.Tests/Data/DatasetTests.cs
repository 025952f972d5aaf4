using MeProp.Data;

namespace MeProp.Tests.Data;

public sealed class DatasetTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    /// <summary>count images of 2x3 whose first pixel is the image index; label = index % 256.</summary>
    private static Dataset Numbered(int count)
    {
        var images = new float[count * 6];
        var labels = new byte[count];
        for (int n = 0; n < count; n++)
        {
            images[n * 6] = n;
            labels[n] = (byte)n;
        }
        return new Dataset(images, labels, 1, 2, 3, 10);
    }

    [Fact]
    public void LoadIdx_ScalesPixelsBy255AndTakesLabelsBelowTheClassCount()
    {
        string images = _directory.File("images");
        string labels = _directory.File("labels.gz");
        File.WriteAllBytes(images, IdxTestFiles.Images(2, 1, 3, (n, i) => (byte)(i switch { 0 => 0, 1 => 51, _ => 255 - n })));
        File.WriteAllBytes(labels, IdxTestFiles.Gzip(IdxTestFiles.Labels(7, 200)));

        Dataset data = Dataset.LoadIdx(images, labels, classes: 201);

        Assert.Equal((2, 1, 1, 3, 3), (data.Count, data.Channels, data.Height, data.Width, data.ImageSize));
        Assert.Equal(new[] { 0f, 51f / 255f, 1f, 0f, 51f / 255f, 254f / 255f }, data.Images.ToArray());
        Assert.Equal(new byte[] { 7, 200 }, data.Labels.ToArray());
    }

    [Fact]
    public void LoadIdx_CountMismatch_NamesBothFiles()
    {
        string images = _directory.File("images");
        string labels = _directory.File("labels");
        File.WriteAllBytes(images, IdxTestFiles.Images(3, 2, 2, (_, _) => 0));
        File.WriteAllBytes(labels, IdxTestFiles.Labels(1, 2));

        var error = Assert.Throws<DataFormatException>(() => Dataset.LoadIdx(images, labels, 10));

        Assert.Equal($"{labels}: 2 labels, but {images} has 3 images", error.Message);
    }

    [Fact]
    public void Constructor_PixelCountMustMatch()
    {
        Assert.Throws<ArgumentException>(() => new Dataset(new float[11], new byte[2], 1, 2, 3, 10));
    }

    [Fact]
    public void Slice_SharesMemoryAndKeepsImagesWithTheirLabels()
    {
        Dataset data = Numbered(10);

        Dataset slice = data.Slice(4, 3);

        Assert.Equal(3, slice.Count);
        Assert.Equal(new byte[] { 4, 5, 6 }, slice.Labels.ToArray());
        Assert.Equal(5f, slice.Images.Span[6]);
        Assert.True(slice.Images.Span.Overlaps(data.Images.Span));
        Assert.Equal(0, data.Slice(10, 0).Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => data.Slice(8, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => data.Slice(-1, 2));
    }

    [Fact]
    public void Split_DevIsTheFirstImagesAndTrainTheRest()
    {
        DatasetSplit split = DatasetSplit.Create(Numbered(20), devSize: 5);

        Assert.NotNull(split.Dev);
        Assert.Equal(Enumerable.Range(0, 5).Select(n => (byte)n), split.Dev.Labels.ToArray());
        Assert.Equal(Enumerable.Range(5, 15).Select(n => (byte)n), split.Train.Labels.ToArray());
    }

    [Fact]
    public void Split_DefaultsToTensorFlowsDevSize()
    {
        DatasetSplit split = DatasetSplit.Create(Numbered(5003));

        Assert.Equal(5000, split.Dev!.Count);
        Assert.Equal(3, split.Train.Count);
        Assert.Equal(5000f, split.Train.Images.Span[0]);
    }

    [Fact]
    public void Split_DevSizeZero_HasNoDevSet()
    {
        DatasetSplit split = DatasetSplit.Create(Numbered(7), devSize: 0);

        Assert.Null(split.Dev);
        Assert.Equal(7, split.Train.Count);
    }

    [Fact]
    public void Split_MaxTrain_TakesTheFirstImagesAfterDev()
    {
        DatasetSplit split = DatasetSplit.Create(Numbered(20), devSize: 5, maxTrain: 3);

        Assert.Equal(new byte[] { 5, 6, 7 }, split.Train.Labels.ToArray());
        Assert.Equal(5, split.Dev!.Count);
    }

    [Theory]
    [InlineData(20, null)]
    [InlineData(21, null)]
    [InlineData(-1, null)]
    [InlineData(5, 16)]
    [InlineData(5, 0)]
    public void Split_OutOfRangeSizes_AreErrors(int devSize, int? maxTrain)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.Create(Numbered(20), devSize, maxTrain));
    }
}
