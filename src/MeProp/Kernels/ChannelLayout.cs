using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MeProp.Kernels;

/// <summary>
/// Transposes between channel planes (NCHW: channel c's positions at planes + c·planeStride) and
/// position rows (channels-last: position p's channels at rows + p·channels), the two layouts a
/// convolution moves between (its GEMM reads and writes position rows). With AVX2, blocks of 8
/// positions by 8 channels are loaded as 8 contiguous runs and transposed in registers (shuffles); a
/// gather of 8 values a row (or plane) apart covers what is left of a block. The scalar loops read one
/// value per cache line across 100 KB per image of 32 maps of 28 x 28, many times over; gathers for every
/// vector took 1.4-1.9 times as long as the shuffles from rows to planes (784 x 32, the sparse input
/// gradient's 14 x 32 crop, the weight gradient's 25 x 32 add) and from planes to short rows (14
/// positions), as long for whole planes.
/// </summary>
internal static unsafe class ChannelLayout
{
    /// <summary>
    /// planes[c, p] = rows[p, c] + bias[c] (bias null: no addition), p &lt; positions; with
    /// <paramref name="accumulate"/>, planes[c, p] += that instead.
    /// </summary>
    public static void RowsToPlanes(float* rows, float* planes, int planeStride, int channels, int positions, float* bias, bool accumulate = false)
    {
        int p0 = 0;
        if (Avx2.IsSupported && positions >= 8)
        {
            var offsets = Vector256<int>.Indices * channels;
            for (; p0 < positions; p0 += 8)
            {
                // A short last run is covered by the last 8 positions, rewriting a few with the same
                // values (a scalar tail cost as much as the vectors for 14-position rows); when adding
                // into the planes it must not add twice, so the tail stays scalar.
                if (p0 + 8 > positions)
                {
                    if (accumulate) break;
                    p0 = positions - 8;
                }
                float* source = rows + (long)p0 * channels;
                int c = 0;
                for (; c + 8 <= channels; c += 8)
                {
                    Transpose8x8(source + c, channels, out var t0, out var t1, out var t2, out var t3, out var t4, out var t5, out var t6, out var t7);
                    float* target = planes + (long)c * planeStride + p0;
                    StorePlaneRun(t0, target, bias, c, accumulate);
                    StorePlaneRun(t1, target + planeStride, bias, c + 1, accumulate);
                    StorePlaneRun(t2, target + 2L * planeStride, bias, c + 2, accumulate);
                    StorePlaneRun(t3, target + 3L * planeStride, bias, c + 3, accumulate);
                    StorePlaneRun(t4, target + 4L * planeStride, bias, c + 4, accumulate);
                    StorePlaneRun(t5, target + 5L * planeStride, bias, c + 5, accumulate);
                    StorePlaneRun(t6, target + 6L * planeStride, bias, c + 6, accumulate);
                    StorePlaneRun(t7, target + 7L * planeStride, bias, c + 7, accumulate);
                }
                for (; c < channels; c++)
                    StorePlaneRun(Avx2.GatherVector256(source + c, offsets, sizeof(float)), planes + (long)c * planeStride + p0, bias, c, accumulate);
            }
        }
        for (int c = 0; c < channels; c++)
        {
            float* plane = planes + (long)c * planeStride;
            float add = bias != null ? bias[c] : 0f;
            for (int p = p0; p < positions; p++)
            {
                float value = bias != null ? rows[(long)p * channels + c] + add : rows[(long)p * channels + c];
                plane[p] = accumulate ? plane[p] + value : value;
            }
        }
    }

    /// <summary>Eight positions of channel c into its plane: plus bias[c] when there is a bias, added to the plane's values when accumulating.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePlaneRun(Vector256<float> v, float* target, float* bias, int c, bool accumulate)
    {
        if (bias != null) v += Vector256.Create(bias[c]);
        if (accumulate) v += Vector256.Load(target);
        Vector256.Store(v, target);
    }

    /// <summary>
    /// Reads 8 rows of 8 values (row i at source + i·stride) and returns the 8 columns, t_j[i] = row i's
    /// value j: three rounds of in-lane shuffles and lane swaps, 24 shuffles for 64 values where eight
    /// gathers load each value separately. Also packs GEMM's A slivers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(float* source, nint stride, out Vector256<float> t0, out Vector256<float> t1, out Vector256<float> t2, out Vector256<float> t3,
        out Vector256<float> t4, out Vector256<float> t5, out Vector256<float> t6, out Vector256<float> t7)
    {
        var r0 = Vector256.Load(source);
        var r1 = Vector256.Load(source + stride);
        var r2 = Vector256.Load(source + 2 * stride);
        var r3 = Vector256.Load(source + 3 * stride);
        var r4 = Vector256.Load(source + 4 * stride);
        var r5 = Vector256.Load(source + 5 * stride);
        var r6 = Vector256.Load(source + 6 * stride);
        var r7 = Vector256.Load(source + 7 * stride);
        // Pairs of rows interleaved, then pairs of pairs: within each 128-bit lane, u_k holds column k (of 4) of rows 0-3 or 4-7.
        var a0 = Avx.UnpackLow(r0, r1); var a1 = Avx.UnpackHigh(r0, r1);
        var a2 = Avx.UnpackLow(r2, r3); var a3 = Avx.UnpackHigh(r2, r3);
        var a4 = Avx.UnpackLow(r4, r5); var a5 = Avx.UnpackHigh(r4, r5);
        var a6 = Avx.UnpackLow(r6, r7); var a7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(a0, a2, 0x44); var u1 = Avx.Shuffle(a0, a2, 0xEE);
        var u2 = Avx.Shuffle(a1, a3, 0x44); var u3 = Avx.Shuffle(a1, a3, 0xEE);
        var u4 = Avx.Shuffle(a4, a6, 0x44); var u5 = Avx.Shuffle(a4, a6, 0xEE);
        var u6 = Avx.Shuffle(a5, a7, 0x44); var u7 = Avx.Shuffle(a5, a7, 0xEE);
        // The low lanes hold columns 0-3, the high lanes columns 4-7.
        t0 = Avx.Permute2x128(u0, u4, 0x20); t4 = Avx.Permute2x128(u0, u4, 0x31);
        t1 = Avx.Permute2x128(u1, u5, 0x20); t5 = Avx.Permute2x128(u1, u5, 0x31);
        t2 = Avx.Permute2x128(u2, u6, 0x20); t6 = Avx.Permute2x128(u2, u6, 0x31);
        t3 = Avx.Permute2x128(u3, u7, 0x20); t7 = Avx.Permute2x128(u3, u7, 0x31);
    }

    /// <summary>rows[p, c] = planes[c, p], p &lt; positions.</summary>
    public static void PlanesToRows(float* planes, int planeStride, float* rows, int channels, int positions)
    {
        int c0 = 0;
        if (Avx2.IsSupported)
        {
            var offsets = Vector256<int>.Indices * planeStride;
            for (; c0 + 8 <= channels; c0 += 8)
            {
                float* source = planes + (long)c0 * planeStride;
                if (positions < 8)
                {
                    for (int p = 0; p < positions; p++)
                        Vector256.Store(Avx2.GatherVector256(source + p, offsets, sizeof(float)), rows + (long)p * channels + c0);
                    continue;
                }
                // Eight positions a block; a short last block is covered by the last eight, rewriting a
                // few rows with the same values.
                for (int p0 = 0; p0 < positions; p0 += 8)
                {
                    if (p0 + 8 > positions) p0 = positions - 8;
                    Transpose8x8(source + p0, planeStride, out var t0, out var t1, out var t2, out var t3, out var t4, out var t5, out var t6, out var t7);
                    float* target = rows + (long)p0 * channels + c0;
                    Vector256.Store(t0, target);
                    Vector256.Store(t1, target + channels);
                    Vector256.Store(t2, target + 2L * channels);
                    Vector256.Store(t3, target + 3L * channels);
                    Vector256.Store(t4, target + 4L * channels);
                    Vector256.Store(t5, target + 5L * channels);
                    Vector256.Store(t6, target + 6L * channels);
                    Vector256.Store(t7, target + 7L * channels);
                }
            }
        }
        for (int p = 0; p < positions; p++)
        {
            float* row = rows + (long)p * channels;
            for (int c = c0; c < channels; c++) row[c] = planes[(long)c * planeStride + p];
        }
    }
}

/// <summary>Twin of <see cref="ChannelLayout"/>: the plain double loops.</summary>
internal static class ChannelLayoutReference
{
    public static void RowsToPlanes(ReadOnlySpan<float> rows, Span<float> planes, int planeStride, int channels, int positions, ReadOnlySpan<float> bias, bool accumulate = false)
    {
        for (int c = 0; c < channels; c++)
            for (int p = 0; p < positions; p++)
            {
                float value = bias.IsEmpty ? rows[p * channels + c] : rows[p * channels + c] + bias[c];
                planes[c * planeStride + p] = accumulate ? planes[c * planeStride + p] + value : value;
            }
    }

    public static void PlanesToRows(ReadOnlySpan<float> planes, int planeStride, Span<float> rows, int channels, int positions)
    {
        for (int p = 0; p < positions; p++)
            for (int c = 0; c < channels; c++)
                rows[p * channels + c] = planes[c * planeStride + p];
    }
}
