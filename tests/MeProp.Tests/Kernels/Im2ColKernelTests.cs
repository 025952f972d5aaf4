using MeProp.Kernels;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Tests.Kernels;

/// <summary>
/// The SIMD im2col/col2im against their plain-loop twins, bit for bit: im2col only copies, and col2im
/// adds each dx element's terms in the reference's order (ascending output position), so both must
/// agree exactly, for any thread count. The spans sit inside larger arrays whose margins must stay
/// untouched (the 8-lane loads and stores run past a segment's end).
/// </summary>
public class Im2ColKernelTests
{
    private const float Sentinel = 12345f;
    private const int Margin = 40;

    /// <summary>n, c, h, w, kh, kw, stride, padding: odd sizes, tiny planes, windows wider than 8, stride 2 and 3.</summary>
    public static TheoryData<int, int, int, int, int, int, int, int> Geometries => new()
    {
        { 10, 1, 28, 28, 5, 5, 1, 2 },  // the paper's conv1
        { 3, 32, 14, 14, 5, 5, 1, 2 },  // the paper's conv2
        { 2, 3, 7, 9, 3, 3, 1, 1 },
        { 3, 2, 7, 5, 3, 3, 2, 1 },
        { 2, 5, 11, 6, 5, 3, 2, 2 },
        { 1, 4, 1, 1, 1, 1, 1, 0 },
        { 2, 2, 1, 7, 1, 3, 1, 1 },
        { 3, 3, 5, 5, 1, 1, 2, 0 },
        { 2, 2, 6, 9, 4, 2, 3, 1 },
        { 1, 3, 4, 4, 5, 5, 1, 2 },     // window larger than the image
        { 2, 2, 13, 17, 7, 7, 2, 0 },
        { 2, 3, 12, 12, 8, 8, 1, 2 },
        { 2, 2, 12, 13, 9, 9, 1, 1 },   // KW > 8: scalar path
        { 2, 2, 11, 19, 3, 11, 2, 2 },
        { 1, 7, 30, 31, 3, 3, 1, 1 },   // several channel blocks in col2im
        { 5, 1, 3, 3, 3, 3, 1, 2 },     // padding 2 on a 3x3 kernel: whole rows of zeros
    };

    [Theory]
    [MemberData(nameof(Geometries))]
    public void ForwardAndBackward_MatchTheReferenceBitForBit(int n, int c, int h, int w, int kh, int kw, int s, int p)
    {
        var g = new ConvGeometry(n, c, h, w, kh, kw, s, p);
        var rng = new Rng((ulong)(((((n * 31 + c) * 31 + h) * 31 + w) * 31 + kh * 7 + kw) * 31 + s * 5 + p));
        int xLength = n * c * h * w, colsLength = g.Positions * g.PatchLength;
        var x = Values(rng, xLength);
        var dcols = Values(rng, colsLength);
        var expectedCols = new float[colsLength];
        Im2ColReference.Forward(g, x, expectedCols);
        var expectedDx = new float[xLength];
        Im2ColReference.Backward(g, dcols, expectedDx);

        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new WorkerPool(threads);
            var xPadded = Padded(x);
            var colsPadded = Padded(colsLength, float.NaN);
            Im2Col.Forward(g, xPadded.AsSpan(Margin, xLength), colsPadded.AsSpan(Margin, colsLength), pool);
            AssertBits(expectedCols, colsPadded, $"im2col, {threads} threads");

            var dcolsPadded = Padded(dcols);
            var dxPadded = Padded(xLength, float.NaN); // col2im overwrites
            Im2Col.Backward(g, dcolsPadded.AsSpan(Margin, colsLength), dxPadded.AsSpan(Margin, xLength), pool);
            AssertBits(expectedDx, dxPadded, $"col2im, {threads} threads");
        }
    }

    [Fact]
    public void SpansAtTheStartAndEndOfTheirArrays_AreHandled()
    {
        // No margins: the first and last positions must not load or store outside the arrays.
        var g = new ConvGeometry(2, 3, 9, 10, 5, 5, 1, 2);
        var rng = new Rng(5);
        var x = Values(rng, g.N * g.C * g.H * g.W);
        var dcols = Values(rng, g.Positions * g.PatchLength);
        var expectedCols = new float[dcols.Length];
        var expectedDx = new float[x.Length];
        Im2ColReference.Forward(g, x, expectedCols);
        Im2ColReference.Backward(g, dcols, expectedDx);
        using var pool = new WorkerPool(2);
        var cols = new float[dcols.Length];
        var dx = new float[x.Length];
        Im2Col.Forward(g, x, cols, pool);
        Im2Col.Backward(g, dcols, dx, pool);
        Assert.Equal(Bits(expectedCols), Bits(cols));
        Assert.Equal(Bits(expectedDx), Bits(dx));
    }

    /// <summary>U(-1, 1) with some exact zeros of both signs, infinities and NaNs, which copies and sums must carry through.</summary>
    private static float[] Values(Rng rng, int length)
    {
        var values = TestData.Uniform(rng, length);
        for (int i = 0; i < length; i++)
        {
            switch (rng.NextInt(97))
            {
                case 0: values[i] = -0f; break;
                case 1: values[i] = 0f; break;
                case 2: values[i] = float.NaN; break;
                case 3: values[i] = float.NegativeInfinity; break;
            }
        }
        return values;
    }

    private static float[] Padded(float[] inner)
    {
        var padded = new float[inner.Length + 2 * Margin];
        Array.Fill(padded, Sentinel);
        inner.CopyTo(padded, Margin);
        return padded;
    }

    private static float[] Padded(int length, float fill)
    {
        var padded = new float[length + 2 * Margin];
        Array.Fill(padded, Sentinel);
        Array.Fill(padded, fill, Margin, length);
        return padded;
    }

    private static void AssertBits(float[] expected, float[] padded, string what)
    {
        for (int i = 0; i < Margin; i++)
        {
            Assert.True(padded[i] == Sentinel, $"{what}: wrote before the span at {i - Margin}");
            Assert.True(padded[Margin + expected.Length + i] == Sentinel, $"{what}: wrote past the span at +{i}");
        }
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(padded[Margin + i]))
                Assert.Fail($"{what}: element {i} is {padded[Margin + i]}, expected {expected[i]}");
        }
    }

    private static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();
}
