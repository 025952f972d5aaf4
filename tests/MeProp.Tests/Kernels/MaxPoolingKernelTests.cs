using MeProp.Kernels;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Tests.Kernels;

/// <summary>
/// The SIMD max pooling against its plain-loop twin, bit for bit, for any thread count: values from a
/// small set so most windows hold ties (the first maximum in row-major order must win), zeros of both
/// signs (which tie), and NaNs (which beat every number; the first NaN wins).
/// </summary>
public class MaxPoolingKernelTests
{
    private const float Sentinel = 12345f;
    private const int Margin = 40;

    /// <summary>planes, h, w, kernel, stride: 2x2/2 with every width from 2 to 35 in the data, odd heights, and other windows.</summary>
    public static TheoryData<int, int, int, int, int> Cases()
    {
        var cases = new TheoryData<int, int, int, int, int>();
        foreach (int w in new[] { 2, 3, 5, 8, 14, 15, 16, 17, 18, 28, 31, 33, 35 })
            cases.Add(3, w % 4 == 1 ? 5 : 6, w, 2, 2);
        cases.Add(320, 28, 28, 2, 2);
        cases.Add(4, 2, 2, 2, 2);
        cases.Add(3, 7, 8, 3, 2);
        cases.Add(2, 9, 9, 3, 3);
        cases.Add(2, 5, 11, 2, 1);
        cases.Add(2, 3, 3, 3, 1);
        cases.Add(2, 8, 20, 4, 4);
        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardAndBackward_MatchTheReferenceBitForBit(int planes, int h, int w, int k, int s)
    {
        var rng = new Rng((ulong)((((planes * 41 + h) * 41 + w) * 41 + k) * 41 + s));
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1, inLength = planes * h * w, outLength = planes * oh * ow;
        var x = new float[inLength];
        for (int i = 0; i < inLength; i++)
        {
            x[i] = rng.NextInt(40) switch
            {
                0 => float.NaN,
                1 => -0f,
                2 => 0f,
                3 => float.NegativeInfinity,
                _ => rng.NextInt(4) - 1.5f,
            };
        }
        var dy = TestData.Uniform(rng, outLength);
        dy[0] = -0f;
        var expectedY = new float[outLength];
        var expectedArgmax = new int[outLength];
        MaxPoolingReference.Forward(x, expectedY, expectedArgmax, planes, h, w, k, s);
        var expectedDx = new float[inLength];
        MaxPoolingReference.Backward(dy, expectedArgmax, expectedDx, planes, h, w, k, s);
        // Any in-plane index is a valid argmax for the backward, not only one inside its window.
        var strayArgmax = expectedArgmax.ToArray();
        for (int i = 0; i < outLength; i += 7) strayArgmax[i] = rng.NextInt(h * w);
        var strayDx = new float[inLength];
        MaxPoolingReference.Backward(dy, strayArgmax, strayDx, planes, h, w, k, s);

        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            var y = Padded(outLength, float.NaN);
            var argmax = new int[outLength + 2 * Margin];
            Array.Fill(argmax, -7);
            MaxPooling.Forward(Padded(x).AsSpan(Margin, inLength), y.AsSpan(Margin, outLength), argmax.AsSpan(Margin, outLength), planes, h, w, k, s, pool);
            AssertBits(expectedY, y, $"y, {threads} threads");
            Assert.Equal(expectedArgmax, argmax.AsSpan(Margin, outLength).ToArray());
            Assert.All(argmax[..Margin].Concat(argmax[^Margin..]), v => Assert.Equal(-7, v));

            foreach (var (indices, expected, name) in new[] { (expectedArgmax, expectedDx, "dx"), (strayArgmax, strayDx, "dx, stray argmax") })
            {
                var dx = Padded(inLength, float.NaN); // overwritten
                MaxPooling.Backward(Padded(dy).AsSpan(Margin, outLength), indices, dx.AsSpan(Margin, inLength), planes, h, w, k, s, pool);
                AssertBits(expected, dx, $"{name}, {threads} threads");
            }
        }
    }

    [Fact]
    public void Forward_OnExactlySizedArrays_ReadsNothingOutside()
    {
        // One 2x2 plane per output row of fewer than 8 windows, the last one at the very end of x.
        var rng = new Rng(3);
        int planes = 5, h = 6, w = 6;
        var x = TestData.Uniform(rng, planes * h * w);
        var y = new float[planes * 9];
        var argmax = new int[y.Length];
        var expectedY = new float[y.Length];
        var expectedArgmax = new int[y.Length];
        MaxPoolingReference.Forward(x, expectedY, expectedArgmax, planes, h, w, 2, 2);
        using var pool = new WorkerPool(2);
        MaxPooling.Forward(x, y, argmax, planes, h, w, 2, 2, pool);
        Assert.Equal(expectedY, y);
        Assert.Equal(expectedArgmax, argmax);
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
}
