using MeProp.Kernels;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Tests.Kernels;

/// <summary>
/// The SIMD and threaded average pooling against its plain-loop twin: window pooling bit for bit (both
/// add a window from 0 in row-major order, then divide), global pooling within the float32 summation
/// bound (the kernel sums with SIMD, the twin in float64), and every result identical for 1, 2 and 3
/// threads. Inputs hold zeros of both signs (a window of -0 must give +0, as the plain loop does).
/// </summary>
public class AvgPoolingKernelTests
{
    private const float Sentinel = 12345f;
    private const int Margin = 40;
    private static readonly int[] ThreadCounts = [1, 2, 3];

    /// <summary>planes, h, w, kernel, stride: 2x2/2 over widths 2 to 35 (the SIMD path from OW = 8), odd heights, overlapping and other windows.</summary>
    public static TheoryData<int, int, int, int, int> Cases()
    {
        var cases = new TheoryData<int, int, int, int, int>();
        foreach (int w in new[] { 2, 3, 5, 8, 14, 15, 16, 17, 18, 28, 31, 33, 35 })
            cases.Add(3, w % 4 == 1 ? 5 : 6, w, 2, 2);
        cases.Add(96, 32, 32, 2, 2);
        cases.Add(4, 2, 2, 2, 2);
        cases.Add(3, 7, 9, 3, 2);   // overlapping windows, floor mode
        cases.Add(5, 11, 11, 3, 2);
        cases.Add(2, 9, 9, 3, 3);
        cases.Add(2, 5, 11, 2, 1);  // every interior input in four windows
        cases.Add(2, 3, 3, 3, 1);   // one window per plane
        cases.Add(2, 8, 20, 4, 4);
        cases.Add(3, 4, 5, 1, 1);
        cases.Add(1, 7, 6, 5, 2);
        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardAndBackward_MatchTheReferenceBitForBit(int planes, int h, int w, int k, int s)
    {
        var rng = new Rng((ulong)((((planes * 41 + h) * 41 + w) * 41 + k) * 41 + s));
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1, inLength = planes * h * w, outLength = planes * oh * ow;
        var x = SignedZerosAndUniform(rng, inLength);
        Array.Fill(x, -0f, 0, h * w); // the first plane all -0
        var dy = SignedZerosAndUniform(rng, outLength);
        var expectedY = new float[outLength];
        AvgPoolingReference.Forward(x, expectedY, planes, h, w, k, s);
        var expectedDx = new float[inLength];
        AvgPoolingReference.Backward(dy, expectedDx, planes, h, w, k, s);

        foreach (int threads in ThreadCounts)
        {
            using var pool = new WorkerPool(threads);
            var y = Padded(outLength, float.NaN); // overwritten
            AvgPooling.Forward(Padded(x).AsSpan(Margin, inLength), y.AsSpan(Margin, outLength), planes, h, w, k, s, pool);
            AssertBits(expectedY, y, $"y, {threads} threads");

            var dx = Padded(inLength, float.NaN); // overwritten, the entries no window covers included
            AvgPooling.Backward(Padded(dy).AsSpan(Margin, outLength), dx.AsSpan(Margin, inLength), planes, h, w, k, s, pool);
            AssertBits(expectedDx, dx, $"dx, {threads} threads");
        }
    }

    /// <summary>planes, plane size: one value, odd sizes, ResNet-20's 8x8, and a plane larger than any SIMD block.</summary>
    public static TheoryData<int, int> GlobalCases => new()
    {
        { 3, 1 }, { 5, 7 }, { 7, 33 }, { 256, 64 }, { 4, 1023 }, { 2, 3 * 3 },
    };

    [Theory]
    [MemberData(nameof(GlobalCases))]
    public void Global_MatchesTheReferenceAndIsTheSameForAnyThreadCount(int planes, int planeSize)
    {
        var rng = new Rng((ulong)(planes * 7919 + planeSize));
        var x = SignedZerosAndUniform(rng, planes * planeSize);
        var dy = SignedZerosAndUniform(rng, planes);
        var expectedY = new float[planes];
        AvgPoolingReference.GlobalForward(x, expectedY, planes, planeSize);
        var expectedDx = new float[x.Length];
        AvgPoolingReference.GlobalBackward(dy, expectedDx, planes, planeSize);

        float[]? firstY = null;
        foreach (int threads in ThreadCounts)
        {
            using var pool = new WorkerPool(threads);
            var y = Padded(planes, float.NaN);
            AvgPooling.GlobalForward(Padded(x).AsSpan(Margin, x.Length), y.AsSpan(Margin, planes), planes, planeSize, pool);
            AssertSentinels(y, planes, $"global y, {threads} threads");
            var ours = y.AsSpan(Margin, planes).ToArray();
            for (int p = 0; p < planes; p++)
            {
                // Any order of n float32 additions is within (n - 1)·u·Σ|x| of the exact sum (u = 2^-24);
                // divided by n, plus the rounding of the quotient and of the reference's result.
                double absoluteSum = 0;
                for (int i = 0; i < planeSize; i++) absoluteSum += Math.Abs(x[p * planeSize + i]);
                double u = Math.Pow(2, -24);
                double tolerance = (planeSize - 1) * u * absoluteSum / planeSize + 2 * u * Math.Abs(expectedY[p]);
                Assert.True(Math.Abs(ours[p] - expectedY[p]) <= tolerance,
                    $"global y[{p}], {threads} threads: {ours[p]}, expected {expectedY[p]} (tolerance {tolerance:g3})");
            }
            if (firstY is null) firstY = ours;
            else Assert.Equal(firstY, ours);

            var dx = Padded(x.Length, float.NaN);
            AvgPooling.GlobalBackward(Padded(dy).AsSpan(Margin, planes), dx.AsSpan(Margin, x.Length), planes, planeSize, pool);
            AssertBits(expectedDx, dx, $"global dx, {threads} threads");
        }
    }

    [Fact]
    public void RejectsShortSpansAndImpossibleWindows()
    {
        using var pool = new WorkerPool(1);
        var x = new float[2 * 6 * 6];
        var y = new float[2 * 3 * 3];
        Assert.Throws<ArgumentException>(() => AvgPooling.Forward(x, y.AsSpan(1), 2, 6, 6, 2, 2, pool));
        Assert.Throws<ArgumentException>(() => AvgPooling.Forward(x.AsSpan(1), y, 2, 6, 6, 2, 2, pool));
        Assert.Throws<ArgumentException>(() => AvgPooling.Backward(y, x.AsSpan(1), 2, 6, 6, 2, 2, pool));
        Assert.Throws<ArgumentException>(() => AvgPooling.Forward(x, y, 2, 6, 6, 7, 1, pool));
        Assert.Throws<ArgumentException>(() => AvgPooling.Forward(x, y, 2, 6, 6, 2, 0, pool));
        Assert.Throws<ArgumentException>(() => AvgPooling.GlobalForward(x, new float[1], 2, 36, pool));
        Assert.Throws<ArgumentException>(() => AvgPooling.GlobalBackward(new float[2], x.AsSpan(1), 2, 36, pool));
    }

    /// <summary>U(-1, 1), with one value in eight -0 and one in eight +0.</summary>
    private static float[] SignedZerosAndUniform(Rng rng, int length)
    {
        var values = new float[length];
        for (int i = 0; i < length; i++)
            values[i] = rng.NextInt(8) switch { 0 => -0f, 1 => 0f, _ => rng.NextUniform(-1f, 1f) };
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

    private static void AssertSentinels(float[] padded, int length, string what)
    {
        for (int i = 0; i < Margin; i++)
        {
            Assert.True(padded[i] == Sentinel, $"{what}: wrote before the span at {i - Margin}");
            Assert.True(padded[Margin + length + i] == Sentinel, $"{what}: wrote past the span at +{i}");
        }
    }

    private static void AssertBits(float[] expected, float[] padded, string what)
    {
        AssertSentinels(padded, expected.Length, what);
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(padded[Margin + i]))
                Assert.Fail($"{what}: element {i} is {padded[Margin + i]}, expected {expected[i]}");
        }
    }
}
