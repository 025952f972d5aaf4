using System.Runtime.CompilerServices;
using MeProp.Threading;

namespace MeProp.Kernels;

/// <summary>
/// Geometry of a 2-D convolution or pooling window.
/// Legend: N batch, C input channels, H x W input, KH x KW window, S stride, P zero padding,
/// OH x OW output; patch length K = C*KH*KW; OH = (H + 2P - KH) / S + 1.
/// </summary>
public readonly record struct ConvGeometry(int N, int C, int H, int W, int KH, int KW, int Stride, int Padding)
{
    public int OH => (H + 2 * Padding - KH) / Stride + 1;
    public int OW => (W + 2 * Padding - KW) / Stride + 1;
    public int PatchLength => C * KH * KW;
    /// <summary>Rows of the patch matrix: one per output position of every image.</summary>
    public int Positions => N * OH * OW;
}

/// <summary>
/// im2col and its adjoint col2im in the "patch rows" layout: cols[(n*OH + oh)*OW + ow, (c*KH + kh)*KW + kw]
/// = x[n, c, oh*S - P + kh, ow*S - P + kw] (zero outside). Each output position's patch is one
/// contiguous row, so a sparse backward can read or scatter one row per kept gradient entry.
/// Threads split the batch: each image's rows (im2col) or plane (col2im) belong to one task.
/// </summary>
public static unsafe class Im2Col
{
    private struct Job
    {
        public float* X, Cols;
        public ConvGeometry G;
    }

    /// <summary>Fills cols [Positions, PatchLength] from x [N, C, H, W].</summary>
    public static void Forward(ConvGeometry g, ReadOnlySpan<float> x, Span<float> cols, WorkerPool pool)
    {
        Check(g, x.Length, cols.Length);
        fixed (float* px = x, pc = cols)
        {
            var job = new Job { X = px, Cols = pc, G = g };
            pool.Run(g.N, &ForwardImage, &job);
        }
    }

    /// <summary>dx [N, C, H, W] = col2im(dcols [Positions, PatchLength]): overwrites dx.</summary>
    public static void Backward(ConvGeometry g, ReadOnlySpan<float> dcols, Span<float> dx, WorkerPool pool)
    {
        Check(g, dx.Length, dcols.Length);
        fixed (float* px = dx, pc = dcols)
        {
            var job = new Job { X = px, Cols = pc, G = g };
            pool.Run(g.N, &BackwardImage, &job);
        }
    }

    private static void Check(ConvGeometry g, int xLength, int colsLength)
    {
        if (xLength < g.N * g.C * g.H * g.W) throw new ArgumentException("im2col: image span too short");
        if (colsLength < (long)g.Positions * g.PatchLength) throw new ArgumentException("im2col: column span too short");
    }

    private static void ForwardImage(void* args, int n)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var g = j.G;
        int oh = g.OH, ow = g.OW, k = g.PatchLength;
        float* image = j.X + (long)n * g.C * g.H * g.W;
        for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
        {
            float* row = j.Cols + ((long)(n * oh + y) * ow + x) * k;
            int iy0 = y * g.Stride - g.Padding, ix0 = x * g.Stride - g.Padding;
            for (int c = 0; c < g.C; c++)
            {
                float* plane = image + (long)c * g.H * g.W;
                for (int ky = 0; ky < g.KH; ky++)
                {
                    int iy = iy0 + ky;
                    float* dst = row + (c * g.KH + ky) * g.KW;
                    if ((uint)iy >= (uint)g.H)
                    {
                        for (int kx = 0; kx < g.KW; kx++) dst[kx] = 0;
                        continue;
                    }
                    float* src = plane + iy * g.W;
                    for (int kx = 0; kx < g.KW; kx++)
                    {
                        int ix = ix0 + kx;
                        dst[kx] = (uint)ix < (uint)g.W ? src[ix] : 0;
                    }
                }
            }
        }
    }

    private static void BackwardImage(void* args, int n)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var g = j.G;
        int oh = g.OH, ow = g.OW, k = g.PatchLength;
        float* image = j.X + (long)n * g.C * g.H * g.W;
        new Span<float>(image, g.C * g.H * g.W).Clear();
        for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
        {
            float* row = j.Cols + ((long)(n * oh + y) * ow + x) * k;
            int iy0 = y * g.Stride - g.Padding, ix0 = x * g.Stride - g.Padding;
            for (int c = 0; c < g.C; c++)
            {
                float* plane = image + (long)c * g.H * g.W;
                for (int ky = 0; ky < g.KH; ky++)
                {
                    int iy = iy0 + ky;
                    if ((uint)iy >= (uint)g.H) continue;
                    float* src = row + (c * g.KH + ky) * g.KW;
                    float* dst = plane + iy * g.W;
                    for (int kx = 0; kx < g.KW; kx++)
                    {
                        int ix = ix0 + kx;
                        if ((uint)ix < (uint)g.W) dst[ix] += src[kx];
                    }
                }
            }
        }
    }
}
