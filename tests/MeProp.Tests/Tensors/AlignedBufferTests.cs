using MeProp.Tensors;

namespace MeProp.Tests.Tensors;

public class AlignedBufferTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(1000)]
    [InlineData(100_003)]
    public unsafe void SpansStartOnA64ByteBoundaryAndKeepTheirLength(int length)
    {
        var buffer = new AlignedBuffer();
        foreach (int request in new[] { length, length / 2 + 1, length * 3 })
        {
            var span = buffer.Span(request);
            Assert.Equal(request, span.Length);
            fixed (float* start = span) Assert.Equal(0, (long)start % 64);
        }
    }

    [Fact]
    public void ReusesStorageWhenLargeEnoughAndZeroesWhenGrowing()
    {
        var buffer = new AlignedBuffer();
        var first = buffer.Span(100);
        first.Fill(3f);
        var again = buffer.Span(50);
        Assert.Equal(3f, again[49]); // same storage, contents kept
        var grown = buffer.Span(10_000);
        Assert.All(grown.ToArray(), v => Assert.Equal(0f, v));
    }
}
