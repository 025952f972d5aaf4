using MeProp.Data;
using MeProp.Tensors;

namespace MeProp.Tests.Data;

public sealed class BatchLoaderTests
{
    private const int Height = 2, Width = 3;

    /// <summary>count images whose pixels all equal the image index; label = index % 256.</summary>
    private static Dataset Numbered(int count)
    {
        var images = new float[count * Height * Width];
        var labels = new byte[count];
        for (int n = 0; n < count; n++)
        {
            images.AsSpan(n * Height * Width, Height * Width).Fill(n);
            labels[n] = (byte)n;
        }
        return new Dataset(images, labels, 1, Height, Width, 10);
    }

    /// <summary>The image indices of one epoch, in batch order, checking each image against its label.</summary>
    private static List<int> EpochOrder(BatchLoader loader, int epoch)
    {
        var images = new Tensor(1);
        var labels = new int[loader.BatchSize];
        var order = new List<int>();
        loader.StartEpoch(epoch);
        for (int b = 0; b < loader.BatchCount; b++)
        {
            int count = loader.FillBatch(b, images, labels);
            Assert.Equal(new[] { count, 1, Height, Width }, images.ShapeArray());
            for (int i = 0; i < count; i++)
            {
                int index = (int)images.Span[i * Height * Width];
                Assert.All(images.Span.Slice(i * Height * Width, Height * Width).ToArray(), value => Assert.Equal(index, value));
                Assert.Equal(index % 256, labels[i]);
                order.Add(index);
            }
        }
        return order;
    }

    [Theory]
    [InlineData(10, 4, 3)]
    [InlineData(12, 4, 3)]
    [InlineData(1, 4, 1)]
    [InlineData(300, 1, 300)]
    public void Epoch_VisitsEveryImageOnce_LastPartialBatchIncluded(int count, int batchSize, int batchCount)
    {
        var loader = new BatchLoader(Numbered(count), batchSize, shuffle: true, seed: 42);

        Assert.Equal(batchCount, loader.BatchCount);
        for (int epoch = 0; epoch < 3; epoch++)
            Assert.Equal(Enumerable.Range(0, count), EpochOrder(loader, epoch).Order());
    }

    [Fact]
    public void Shuffle_DependsOnlyOnSeedAndEpoch()
    {
        var running = new BatchLoader(Numbered(50), 8, shuffle: true, seed: 7);
        List<int>[] epochs = [.. Enumerable.Range(0, 4).Select(epoch => EpochOrder(running, epoch))];
        var resumed = new BatchLoader(Numbered(50), 8, shuffle: true, seed: 7);

        Assert.Equal(epochs[3], EpochOrder(resumed, 3));
        Assert.Equal(epochs[1], EpochOrder(resumed, 1));
        Assert.NotEqual(epochs[0], epochs[1]);
        Assert.NotEqual(Enumerable.Range(0, 50), epochs[0]);
        Assert.NotEqual(epochs[2], EpochOrder(new BatchLoader(Numbered(50), 8, shuffle: true, seed: 8), 2));
    }

    [Fact]
    public void NoShuffle_IsIndexOrderEveryEpoch()
    {
        var loader = new BatchLoader(Numbered(11), 4, shuffle: false);

        Assert.Equal(Enumerable.Range(0, 11), EpochOrder(loader, 0));
        Assert.Equal(Enumerable.Range(0, 11), EpochOrder(loader, 5));
    }

    [Fact]
    public void LastBatch_ReshapesWithinTheSameStorage()
    {
        var loader = new BatchLoader(Numbered(10), 4, shuffle: false);
        var images = new Tensor(4, 1, Height, Width);
        var before = images.View(4, 1, Height, Width);
        var labels = new int[4];

        Assert.Equal(2, loader.FillBatch(2, images, labels));

        Assert.Equal(new[] { 2, 1, Height, Width }, images.ShapeArray());
        Assert.True(images.SharesStorageWith(before));
        Assert.Equal(new[] { 8, 9 }, labels[..2]);
    }

    [Fact]
    public void FullBatches_AllocateNothing()
    {
        var loader = new BatchLoader(Numbered(1000), 32, shuffle: true, seed: 1);
        var images = new Tensor(32, 1, Height, Width);
        var labels = new int[32];
        loader.StartEpoch(0);
        loader.FillBatch(0, images, labels);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int b = 0; b < loader.BatchCount - 1; b++) loader.FillBatch(b, images, labels);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
    }

    [Fact]
    public void Misuse_IsReported()
    {
        var loader = new BatchLoader(Numbered(10), 4, shuffle: true, seed: 1);
        var images = new Tensor(1);

        Assert.Throws<InvalidOperationException>(() => loader.FillBatch(0, images, new int[4]));
        loader.StartEpoch(0);
        Assert.Throws<ArgumentOutOfRangeException>(() => loader.FillBatch(3, images, new int[4]));
        Assert.Throws<ArgumentException>(() => loader.FillBatch(0, images, new int[3]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchLoader(Numbered(10), 0, shuffle: false));
    }
}
