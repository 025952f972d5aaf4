using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MeProp.Kernels;

/// <summary>
/// A convolution's weight gradient read straight from the zero-padded channels-last input and dY laid
/// out as rows, without the patch matrix (dW = dYᵀ · cols with cols never formed):
/// sums[o, ky, j] += Σ over output positions q of padded[origin(q) + ky·runStride + j] · dyRows[q, o],
/// for j &lt; KW·C (j = kx·C + c: a patch run, as in <see cref="DirectConvolution"/>) and o &lt; oc.
/// Legend: padded [H+2P, W+2P, C] and at least <see cref="SparseBackward.ReadSlack"/> floats after it;
/// dyRows [OH·OW, oc] and <see cref="RowSlack"/> floats after it; sums [ChannelsPadded(oc), KH, RunPadded].
/// A tile is <see cref="TileDepth"/> consecutive j of one run by <see cref="TileChannels"/> output
/// channels, held in registers over all of an image's positions: a position costs one load of input
/// values and a broadcast per channel, where im2col would write the patch and the product read it back.
/// Lanes past a run's end and channels past oc read whatever follows them and land in the padding of
/// sums, which callers ignore. Each image's terms are one FMA chain over its positions in order, added to
/// sums once (so a sum over a whole batch is a sum of per-image partial sums, not one chain of N·OH·OW
/// terms), in the order the images are given, whichever thread a caller hands each tile to.
/// </summary>
internal static unsafe class DirectWeightGradient
{
    /// <summary>Run values (j) of a tile: one 512-bit vector, or two 256-bit ones.</summary>
    public const int TileDepth = 16;

    /// <summary>Output channels of a tile: 16 zmm accumulators with 512-bit vectors, 12 ymm (6 channels x 2) otherwise.</summary>
    public static readonly int TileChannels = Vector512.IsHardwareAccelerated ? 16 : 6;

    /// <summary>Floats past dyRows that a last, partial channel tile may read (and ignore).</summary>
    public static int RowSlack => TileChannels;

    /// <summary>A run (KW·C values) rounded up to whole tiles.</summary>
    public static int RunPadded(ConvGeometry g) => (g.KW * g.C + TileDepth - 1) / TileDepth * TileDepth;

    public static int ChannelsPadded(int oc) => (oc + TileChannels - 1) / TileChannels * TileChannels;

    /// <summary>Length of sums [ChannelsPadded(oc), KH, RunPadded].</summary>
    public static int SumsLength(ConvGeometry g, int oc) => checked(ChannelsPadded(oc) * g.KH * RunPadded(g));

    /// <summary>Tiles of a layer: KH runs x RunPadded / TileDepth x ChannelsPadded / TileChannels.</summary>
    public static int Tiles(ConvGeometry g, int oc) => g.KH * (RunPadded(g) / TileDepth) * (ChannelsPadded(oc) / TileChannels);

    /// <summary>
    /// Adds one image's terms to tiles first, first + step, ... (see the class summary); N in
    /// <paramref name="g"/> is ignored.
    /// </summary>
    public static void AddImage(float* padded, ConvGeometry g, float* dyRows, int oc, float* sums, int first, int step)
    {
        int runPadded = RunPadded(g), depthBlocks = runPadded / TileDepth, channelBlocks = ChannelsPadded(oc) / TileChannels;
        int tiles = g.KH * depthBlocks * channelBlocks;
        nint runStride = (nint)(g.W + 2 * g.Padding) * g.C, rowStep = g.Stride * runStride, columnStep = (nint)g.Stride * g.C;
        nint ldc = (nint)g.KH * runPadded;
        for (int t = first; t < tiles; t += step)
        {
            int block = t % channelBlocks, rest = t / channelBlocks, depth = rest % depthBlocks, ky = rest / depthBlocks;
            float* a = padded + ky * runStride + depth * TileDepth;
            float* d = dyRows + block * TileChannels;
            float* c = sums + block * TileChannels * ldc + ky * runPadded + depth * TileDepth;
            if (Vector512.IsHardwareAccelerated) Tile16x16(a, rowStep, columnStep, g.OH, g.OW, d, oc, c, ldc);
            else Tile16x6(a, rowStep, columnStep, g.OH, g.OW, d, oc, c, ldc);
        }
    }

    /// <summary>
    /// 16 run values x 16 channels in 16 zmm accumulators, over rows x columns positions: position
    /// (oy, ox) reads a + oy·rowStep + ox·columnStep and dY row d + (oy·columns + ox)·ldd.
    /// </summary>
    private static void Tile16x16(float* a, nint rowStep, nint columnStep, int rows, int columns, float* d, int ldd, float* c, nint ldc)
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default,
            c8 = default, c9 = default, c10 = default, c11 = default, c12 = default, c13 = default, c14 = default, c15 = default;
        for (int oy = 0; oy < rows; oy++, a += rowStep)
        {
            float* x = a;
            for (int ox = 0; ox < columns; ox++, x += columnStep, d += ldd)
            {
                var v = Vector512.Load(x);
                c0 = Vector512.FusedMultiplyAdd(Vector512.Create(d[0]), v, c0);
                c1 = Vector512.FusedMultiplyAdd(Vector512.Create(d[1]), v, c1);
                c2 = Vector512.FusedMultiplyAdd(Vector512.Create(d[2]), v, c2);
                c3 = Vector512.FusedMultiplyAdd(Vector512.Create(d[3]), v, c3);
                c4 = Vector512.FusedMultiplyAdd(Vector512.Create(d[4]), v, c4);
                c5 = Vector512.FusedMultiplyAdd(Vector512.Create(d[5]), v, c5);
                c6 = Vector512.FusedMultiplyAdd(Vector512.Create(d[6]), v, c6);
                c7 = Vector512.FusedMultiplyAdd(Vector512.Create(d[7]), v, c7);
                c8 = Vector512.FusedMultiplyAdd(Vector512.Create(d[8]), v, c8);
                c9 = Vector512.FusedMultiplyAdd(Vector512.Create(d[9]), v, c9);
                c10 = Vector512.FusedMultiplyAdd(Vector512.Create(d[10]), v, c10);
                c11 = Vector512.FusedMultiplyAdd(Vector512.Create(d[11]), v, c11);
                c12 = Vector512.FusedMultiplyAdd(Vector512.Create(d[12]), v, c12);
                c13 = Vector512.FusedMultiplyAdd(Vector512.Create(d[13]), v, c13);
                c14 = Vector512.FusedMultiplyAdd(Vector512.Create(d[14]), v, c14);
                c15 = Vector512.FusedMultiplyAdd(Vector512.Create(d[15]), v, c15);
            }
        }
        AddTo(c, c0); AddTo(c + ldc, c1); AddTo(c + 2 * ldc, c2); AddTo(c + 3 * ldc, c3);
        AddTo(c + 4 * ldc, c4); AddTo(c + 5 * ldc, c5); AddTo(c + 6 * ldc, c6); AddTo(c + 7 * ldc, c7);
        AddTo(c + 8 * ldc, c8); AddTo(c + 9 * ldc, c9); AddTo(c + 10 * ldc, c10); AddTo(c + 11 * ldc, c11);
        AddTo(c + 12 * ldc, c12); AddTo(c + 13 * ldc, c13); AddTo(c + 14 * ldc, c14); AddTo(c + 15 * ldc, c15);
    }

    /// <summary>16 run values (two ymm) x 6 channels in 12 ymm accumulators, for CPUs without 512-bit vectors; as <see cref="Tile16x16"/>.</summary>
    private static void Tile16x6(float* a, nint rowStep, nint columnStep, int rows, int columns, float* d, int ldd, float* c, nint ldc)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int oy = 0; oy < rows; oy++, a += rowStep)
        {
            float* x = a;
            for (int ox = 0; ox < columns; ox++, x += columnStep, d += ldd)
            {
                var v0 = Vector256.Load(x);
                var v1 = Vector256.Load(x + 8);
                var s = Vector256.Create(d[0]); c00 = Vector256.FusedMultiplyAdd(s, v0, c00); c01 = Vector256.FusedMultiplyAdd(s, v1, c01);
                s = Vector256.Create(d[1]); c10 = Vector256.FusedMultiplyAdd(s, v0, c10); c11 = Vector256.FusedMultiplyAdd(s, v1, c11);
                s = Vector256.Create(d[2]); c20 = Vector256.FusedMultiplyAdd(s, v0, c20); c21 = Vector256.FusedMultiplyAdd(s, v1, c21);
                s = Vector256.Create(d[3]); c30 = Vector256.FusedMultiplyAdd(s, v0, c30); c31 = Vector256.FusedMultiplyAdd(s, v1, c31);
                s = Vector256.Create(d[4]); c40 = Vector256.FusedMultiplyAdd(s, v0, c40); c41 = Vector256.FusedMultiplyAdd(s, v1, c41);
                s = Vector256.Create(d[5]); c50 = Vector256.FusedMultiplyAdd(s, v0, c50); c51 = Vector256.FusedMultiplyAdd(s, v1, c51);
            }
        }
        AddTo(c, c00); AddTo(c + 8, c01);
        AddTo(c + ldc, c10); AddTo(c + ldc + 8, c11);
        AddTo(c + 2 * ldc, c20); AddTo(c + 2 * ldc + 8, c21);
        AddTo(c + 3 * ldc, c30); AddTo(c + 3 * ldc + 8, c31);
        AddTo(c + 4 * ldc, c40); AddTo(c + 4 * ldc + 8, c41);
        AddTo(c + 5 * ldc, c50); AddTo(c + 5 * ldc + 8, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddTo(float* c, Vector512<float> sum) => Vector512.Store(Vector512.Load(c) + sum, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddTo(float* c, Vector256<float> sum) => Vector256.Store(Vector256.Load(c) + sum, c);
}

/// <summary>Twin of <see cref="DirectWeightGradient"/>: the definition as plain loops, float64 sums, unpadded.</summary>
internal static class DirectWeightGradientReference
{
    /// <summary>sums[o, ky, kx·C + c] += Σ over positions of padded[oy·S + ky, ox·S + kx, c] · dyRows[oy·OW + ox, o]; sums [oc, KH, KW·C].</summary>
    public static void AddImage(ReadOnlySpan<float> padded, ConvGeometry g, ReadOnlySpan<float> dyRows, int oc, Span<float> sums)
    {
        int paddedW = g.W + 2 * g.Padding, run = g.KW * g.C;
        for (int o = 0; o < oc; o++)
            for (int ky = 0; ky < g.KH; ky++)
                for (int kx = 0; kx < g.KW; kx++)
                    for (int c = 0; c < g.C; c++)
                    {
                        double sum = 0;
                        for (int oy = 0; oy < g.OH; oy++)
                            for (int ox = 0; ox < g.OW; ox++)
                                sum += (double)padded[((oy * g.Stride + ky) * paddedW + ox * g.Stride + kx) * g.C + c] * dyRows[(oy * g.OW + ox) * oc + o];
                        sums[(o * g.KH + ky) * run + kx * g.C + c] += (float)sum;
                    }
    }
}
