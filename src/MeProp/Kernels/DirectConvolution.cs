using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MeProp.Kernels;

/// <summary>
/// One image's convolution read straight from its zero-padded channels-last copy, without gathering
/// its patches first (an implicit GEMM):
/// rows[q, o] = Σ over (ky, kx, c) of padded[oy·S + ky, ox·S + kx, c] · weightT[(ky·KW + kx)·C + c, o],
/// q = oy·OW + ox. Legend: padded [H+2P, W+2P, C]; weightT [KH·KW·C, OC], the weight transposed, then
/// <see cref="WeightSlack"/> more floats; rows [OH·OW, OC].
/// A register tile is MR consecutive output positions (across an output row's end where it must) by
/// NR channels. Each position's patch is KH runs of KW·C contiguous values, and the tile's positions
/// sit at fixed distances from its first one in every run, so the tile sums its whole patch depth in
/// registers and stores once; the gather into im2col rows and the GEMM's KC blocks (and its reloads of
/// C between them) disappear. Each output is one chain of FMAs in (ky, kx, c) order from zero.
/// </summary>
internal static unsafe class DirectConvolution
{
    /// <summary>Floats past the transposed weight that a last, partial channel panel may read (and ignore).</summary>
    public static int WeightSlack => Gemm.NR;

    /// <summary>rows [OH·OW, OC] of image <paramref name="padded"/> (see the class summary); N in <paramref name="g"/> is ignored.</summary>
    public static void ForwardImage(float* padded, ConvGeometry g, float* weightT, int oc, float* rows)
    {
        // At most 16 channels: 16 positions x 16 channels a tile, where 8 x 32 would compute as many unused
        // channels as used ones. Each output's sum runs in the same order either way.
        bool narrow = Vector512.IsHardwareAccelerated && oc <= NarrowTile;
        int mr = narrow ? NarrowTile : Gemm.MR, nr = narrow ? NarrowTile : Gemm.NR, ow = g.OW, plane = g.OH * ow, paddedW = g.W + 2 * g.Padding;
        int runLength = g.KW * g.C;
        nint runStride = (nint)paddedW * g.C;
        nint* offsets = stackalloc nint[MaxTileRows];
        float* edge = stackalloc float[MaxTileRows * Gemm.NR];
        // (oy0, ox0) is position q0, stepped without divisions: with a first layer's short patches two
        // divisions per tile row cost as much as the tile's FMAs (5x5, 1 -> 32 channels at 28 x 28,
        // 10 images, 1 thread: 140 -> 102 us).
        for (int q0 = 0, oy0 = 0, ox0 = 0; q0 < plane; q0 += mr)
        {
            int tileRows = Math.Min(mr, plane - q0);
            nint first = Origin(oy0, ox0, g.Stride, paddedW, g.C);
            // Rows past the last position repeat it: the kernel's loop stays branch-free, their sums unused.
            for (int r = 0, oy = oy0, ox = ox0; r < mr; r++)
            {
                offsets[r] = Origin(oy, ox, g.Stride, paddedW, g.C) - first;
                if (r + 1 < tileRows && ++ox == ow) (oy, ox) = (oy + 1, 0);
            }
            for (ox0 += mr; ox0 >= ow; ox0 -= ow) oy0++;
            for (int c0 = 0; c0 < oc; c0 += nr)
            {
                int cols = Math.Min(nr, oc - c0);
                float* target = rows + (long)q0 * oc + c0;
                bool whole = tileRows == mr && cols == nr;
                float* tile = whole ? target : edge;
                int ldt = whole ? oc : nr;
                if (narrow) Tile16x16(padded + first, offsets, g.KH, runLength, runStride, weightT + c0, oc, tile, ldt);
                else if (Vector512.IsHardwareAccelerated) Tile8x32(padded + first, offsets, g.KH, runLength, runStride, weightT + c0, oc, tile, ldt);
                else Tile6x16(padded + first, offsets, g.KH, runLength, runStride, weightT + c0, oc, tile, ldt);
                if (whole) continue;
                for (int r = 0; r < tileRows; r++)
                    for (int q = 0; q < cols; q++) target[(long)r * oc + q] = edge[r * nr + q];
            }
        }
    }

    /// <summary>Positions and channels of the narrow tile (<see cref="Tile16x16"/>).</summary>
    private const int NarrowTile = 16;

    private const int MaxTileRows = 16;

    /// <summary>Offset in the padded image of output position (oy, ox)'s patch start (channel 0).</summary>
    private static nint Origin(int oy, int ox, int stride, int paddedW, int c) => ((nint)oy * stride * paddedW + (nint)ox * stride) * c;

    /// <summary>
    /// 8 positions x 32 channels in 16 zmm accumulators. Row r's patch run ky starts at
    /// a + offsets[r] + ky·runStride; the weight steps b by ldb per depth step, through all KH runs.
    /// </summary>
    private static void Tile8x32(float* a, nint* offsets, int runs, int runLength, nint runStride, float* b, nint ldb, float* c, int ldc)
    {
        nint o1 = offsets[1], o2 = offsets[2], o3 = offsets[3], o4 = offsets[4], o5 = offsets[5], o6 = offsets[6], o7 = offsets[7];
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default,
            c20 = default, c21 = default, c30 = default, c31 = default,
            c40 = default, c41 = default, c50 = default, c51 = default,
            c60 = default, c61 = default, c70 = default, c71 = default;
        for (int run = 0; run < runs; run++, a += runStride)
        {
            float* x = a;
            for (int kk = 0; kk < runLength; kk++, x++, b += ldb)
            {
                var b0 = Vector512.Load(b);
                var b1 = Vector512.Load(b + 16);
                var v = Vector512.Create(x[0]); c00 = Vector512.FusedMultiplyAdd(v, b0, c00); c01 = Vector512.FusedMultiplyAdd(v, b1, c01);
                v = Vector512.Create(x[o1]); c10 = Vector512.FusedMultiplyAdd(v, b0, c10); c11 = Vector512.FusedMultiplyAdd(v, b1, c11);
                v = Vector512.Create(x[o2]); c20 = Vector512.FusedMultiplyAdd(v, b0, c20); c21 = Vector512.FusedMultiplyAdd(v, b1, c21);
                v = Vector512.Create(x[o3]); c30 = Vector512.FusedMultiplyAdd(v, b0, c30); c31 = Vector512.FusedMultiplyAdd(v, b1, c31);
                v = Vector512.Create(x[o4]); c40 = Vector512.FusedMultiplyAdd(v, b0, c40); c41 = Vector512.FusedMultiplyAdd(v, b1, c41);
                v = Vector512.Create(x[o5]); c50 = Vector512.FusedMultiplyAdd(v, b0, c50); c51 = Vector512.FusedMultiplyAdd(v, b1, c51);
                v = Vector512.Create(x[o6]); c60 = Vector512.FusedMultiplyAdd(v, b0, c60); c61 = Vector512.FusedMultiplyAdd(v, b1, c61);
                v = Vector512.Create(x[o7]); c70 = Vector512.FusedMultiplyAdd(v, b0, c70); c71 = Vector512.FusedMultiplyAdd(v, b1, c71);
            }
        }
        Store(c, c00, c01); c += ldc;
        Store(c, c10, c11); c += ldc;
        Store(c, c20, c21); c += ldc;
        Store(c, c30, c31); c += ldc;
        Store(c, c40, c41); c += ldc;
        Store(c, c50, c51); c += ldc;
        Store(c, c60, c61); c += ldc;
        Store(c, c70, c71);
    }

    /// <summary>16 positions x 16 channels in 16 zmm accumulators, for at most 16 output channels; as <see cref="Tile8x32"/>.</summary>
    private static void Tile16x16(float* a, nint* offsets, int runs, int runLength, nint runStride, float* b, nint ldb, float* c, int ldc)
    {
        nint o1 = offsets[1], o2 = offsets[2], o3 = offsets[3], o4 = offsets[4], o5 = offsets[5], o6 = offsets[6], o7 = offsets[7],
            o8 = offsets[8], o9 = offsets[9], o10 = offsets[10], o11 = offsets[11], o12 = offsets[12], o13 = offsets[13], o14 = offsets[14], o15 = offsets[15];
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default,
            c8 = default, c9 = default, c10 = default, c11 = default, c12 = default, c13 = default, c14 = default, c15 = default;
        for (int run = 0; run < runs; run++, a += runStride)
        {
            float* x = a;
            for (int kk = 0; kk < runLength; kk++, x++, b += ldb)
            {
                var w = Vector512.Load(b);
                c0 = Vector512.FusedMultiplyAdd(Vector512.Create(x[0]), w, c0);
                c1 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o1]), w, c1);
                c2 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o2]), w, c2);
                c3 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o3]), w, c3);
                c4 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o4]), w, c4);
                c5 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o5]), w, c5);
                c6 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o6]), w, c6);
                c7 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o7]), w, c7);
                c8 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o8]), w, c8);
                c9 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o9]), w, c9);
                c10 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o10]), w, c10);
                c11 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o11]), w, c11);
                c12 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o12]), w, c12);
                c13 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o13]), w, c13);
                c14 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o14]), w, c14);
                c15 = Vector512.FusedMultiplyAdd(Vector512.Create(x[o15]), w, c15);
            }
        }
        Vector512.Store(c0, c); c += ldc; Vector512.Store(c1, c); c += ldc; Vector512.Store(c2, c); c += ldc; Vector512.Store(c3, c); c += ldc;
        Vector512.Store(c4, c); c += ldc; Vector512.Store(c5, c); c += ldc; Vector512.Store(c6, c); c += ldc; Vector512.Store(c7, c); c += ldc;
        Vector512.Store(c8, c); c += ldc; Vector512.Store(c9, c); c += ldc; Vector512.Store(c10, c); c += ldc; Vector512.Store(c11, c); c += ldc;
        Vector512.Store(c12, c); c += ldc; Vector512.Store(c13, c); c += ldc; Vector512.Store(c14, c); c += ldc; Vector512.Store(c15, c);
    }

    /// <summary>6 positions x 16 channels in 12 ymm accumulators, for CPUs without 512-bit vectors; as <see cref="Tile8x32"/>.</summary>
    private static void Tile6x16(float* a, nint* offsets, int runs, int runLength, nint runStride, float* b, nint ldb, float* c, int ldc)
    {
        nint o1 = offsets[1], o2 = offsets[2], o3 = offsets[3], o4 = offsets[4], o5 = offsets[5];
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int run = 0; run < runs; run++, a += runStride)
        {
            float* x = a;
            for (int kk = 0; kk < runLength; kk++, x++, b += ldb)
            {
                var b0 = Vector256.Load(b);
                var b1 = Vector256.Load(b + 8);
                var v = Vector256.Create(x[0]); c00 = Vector256.FusedMultiplyAdd(v, b0, c00); c01 = Vector256.FusedMultiplyAdd(v, b1, c01);
                v = Vector256.Create(x[o1]); c10 = Vector256.FusedMultiplyAdd(v, b0, c10); c11 = Vector256.FusedMultiplyAdd(v, b1, c11);
                v = Vector256.Create(x[o2]); c20 = Vector256.FusedMultiplyAdd(v, b0, c20); c21 = Vector256.FusedMultiplyAdd(v, b1, c21);
                v = Vector256.Create(x[o3]); c30 = Vector256.FusedMultiplyAdd(v, b0, c30); c31 = Vector256.FusedMultiplyAdd(v, b1, c31);
                v = Vector256.Create(x[o4]); c40 = Vector256.FusedMultiplyAdd(v, b0, c40); c41 = Vector256.FusedMultiplyAdd(v, b1, c41);
                v = Vector256.Create(x[o5]); c50 = Vector256.FusedMultiplyAdd(v, b0, c50); c51 = Vector256.FusedMultiplyAdd(v, b1, c51);
            }
        }
        Vector256.Store(c00, c); Vector256.Store(c01, c + 8); c += ldc;
        Vector256.Store(c10, c); Vector256.Store(c11, c + 8); c += ldc;
        Vector256.Store(c20, c); Vector256.Store(c21, c + 8); c += ldc;
        Vector256.Store(c30, c); Vector256.Store(c31, c + 8); c += ldc;
        Vector256.Store(c40, c); Vector256.Store(c41, c + 8); c += ldc;
        Vector256.Store(c50, c); Vector256.Store(c51, c + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector512<float> v0, Vector512<float> v1)
    {
        Vector512.Store(v0, c);
        Vector512.Store(v1, c + 16);
    }
}

/// <summary>Twin of <see cref="DirectConvolution"/>: the definition as plain loops, float64 sums.</summary>
internal static class DirectConvolutionReference
{
    public static void ForwardImage(ReadOnlySpan<float> padded, ConvGeometry g, ReadOnlySpan<float> weightT, int oc, Span<float> rows)
    {
        int paddedW = g.W + 2 * g.Padding;
        for (int oy = 0; oy < g.OH; oy++)
            for (int ox = 0; ox < g.OW; ox++)
                for (int o = 0; o < oc; o++)
                {
                    double sum = 0;
                    for (int ky = 0; ky < g.KH; ky++)
                        for (int kx = 0; kx < g.KW; kx++)
                            for (int c = 0; c < g.C; c++)
                                sum += (double)padded[((oy * g.Stride + ky) * paddedW + ox * g.Stride + kx) * g.C + c]
                                    * weightT[((ky * g.KW + kx) * g.C + c) * oc + o];
                    rows[(oy * g.OW + ox) * oc + o] = (float)sum;
                }
    }
}
