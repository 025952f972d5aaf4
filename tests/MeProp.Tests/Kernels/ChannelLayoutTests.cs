using MeProp.Kernels;
using MeProp.Tensors;

namespace MeProp.Tests.Kernels;

public unsafe class ChannelLayoutTests
{
    // (channels, positions, extra plane stride): odd sizes, an 8-position/8-channel vector with and
    // without tails, and the network's conv1, conv2 and weight shapes.
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 0 }, { 3, 7, 2 }, { 8, 8, 0 }, { 16, 16, 0 }, { 17, 33, 5 }, { 15, 47, 1 }, { 32, 784, 0 }, { 64, 196, 0 }, { 32, 25, 0 }, { 33, 14, 182 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void RowsToPlanesMatchesReference(int channels, int positions, int extraStride)
    {
        var rng = new Rng((ulong)(channels * 1000 + positions));
        int stride = positions + extraStride;
        var rows = TestData.Uniform(rng, channels * positions);
        var bias = TestData.Uniform(rng, channels);
        foreach (bool withBias in new[] { false, true })
        foreach (bool accumulate in new[] { false, true })
        {
            // Untouched gaps between planes must stay as they were; added into, the planes' values count.
            var expected = TestData.Uniform(new Rng(7), channels * stride);
            var actual = (float[])expected.Clone();
            ChannelLayoutReference.RowsToPlanes(rows, expected, stride, channels, positions, withBias ? bias : [], accumulate);
            fixed (float* r = rows, p = actual, b = bias)
                ChannelLayout.RowsToPlanes(r, p, stride, channels, positions, withBias ? b : null, accumulate);
            Assert.Equal(expected, actual);
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void PlanesToRowsMatchesReference(int channels, int positions, int extraStride)
    {
        var rng = new Rng((ulong)(channels * 1000 + positions + 1));
        int stride = positions + extraStride;
        var planes = TestData.Uniform(rng, channels * stride);
        var expected = new float[channels * positions];
        var actual = new float[channels * positions];
        ChannelLayoutReference.PlanesToRows(planes, stride, expected, channels, positions);
        fixed (float* p = planes, r = actual)
            ChannelLayout.PlanesToRows(p, stride, r, channels, positions);
        Assert.Equal(expected, actual);
    }
}
