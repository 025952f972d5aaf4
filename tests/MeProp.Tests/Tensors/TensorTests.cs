using MeProp.Tensors;

namespace MeProp.Tests.Tensors;

public class TensorTests
{
    [Fact]
    public void ElementCountRefusesProductsPastTheLargestArrayWithoutWrapping()
    {
        // 2^21 cubed is 2^63, which wraps to a negative long if multiplied unchecked.
        Assert.Throws<ArgumentException>(() => Tensor.ElementCount([1 << 21, 1 << 21, 1 << 21]));
        Assert.Throws<ArgumentException>(() => new Tensor(1 << 21, 1 << 21, 1 << 21));
        Assert.Throws<ArgumentException>(() => Tensor.ElementCount([65536, 65536]));
        Assert.Throws<ArgumentException>(() => Tensor.ElementCount([-2, -3]));
        Assert.Equal(0, Tensor.ElementCount([1 << 30, 1 << 30, 0]));
        Assert.Equal(24, Tensor.ElementCount([2, 3, 4]));
        Assert.Equal(1, Tensor.ElementCount([]));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(3136)]
    [InlineData(100_003)]
    public unsafe void OwnStorageStartsOnA64ByteBoundaryZeroed_AlsoAfterGrowing(int length)
    {
        var t = new Tensor(length);
        fixed (float* start = t.Span) Assert.Equal(0, (long)start % 64);
        Assert.All(t.Span.ToArray(), v => Assert.Equal(0f, v));
        t.Span.Fill(2f);
        t.Reshape(2, length + 16);
        Assert.Equal(2 * (length + 16), t.Span.Length);
        fixed (float* start = t.Span) Assert.Equal(0, (long)start % 64);
        Assert.All(t.Span.ToArray(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void ViewsShareTheValuesAndTellSo()
    {
        var t = new Tensor(2, 3, 4);
        var flat = t.View(2, 12);
        Assert.True(flat.SharesStorageWith(t));
        flat.Span[13] = 5f;
        Assert.Equal(5f, t.Span[13]);
        Assert.False(new Tensor(2, 12).SharesStorageWith(t));
        Assert.Throws<ArgumentException>(() => t.View(10, 10));
        // Growing past the storage moves the tensor, and the old view no longer shares it.
        t.Reshape(10, 10);
        Assert.False(flat.SharesStorageWith(t));
    }
}
