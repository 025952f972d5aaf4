using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MeProp.Kernels;

/// <summary>
/// Transposes between channel planes (NCHW: channel c's positions at planes + c·planeStride) and
/// position rows (channels-last: position p's channels at rows + p·channels), the two layouts a
/// convolution moves between (its GEMM reads and writes position rows). With AVX2 each vector is one
/// gather of 8 values a row (or plane) apart and one contiguous store: the scalar loops read one
/// value per cache line across 100 KB per conv1 image, many times over.
/// </summary>
public static unsafe class ChannelLayout
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
                for (int c = 0; c < channels; c++)
                {
                    var v = Avx2.GatherVector256(source + c, offsets, sizeof(float));
                    if (bias != null) v += Vector256.Create(bias[c]);
                    float* target = planes + (long)c * planeStride + p0;
                    if (accumulate) v += Vector256.Load(target);
                    Vector256.Store(v, target);
                }
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
                for (int p = 0; p < positions; p++)
                    Vector256.Store(Avx2.GatherVector256(source + p, offsets, sizeof(float)), rows + (long)p * channels + c0);
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
public static class ChannelLayoutReference
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
