using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
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
/// <para>
/// im2col: item (n, oh) writes the OW patch rows of output row oh, a contiguous block; each worker
/// takes one contiguous range of items.
/// Each (c, kh) segment of KW floats (KW &lt;= 8) is one 8-lane load from the input row, masked to zero
/// where the window hangs over the padding, and one 8-lane store; the lanes past KW spill into the
/// next segment, which is written afterwards, so only a worker's last segment must not spill.
/// </para>
/// <para>
/// col2im: item (n, channel block) owns those dx planes; each worker takes a contiguous range of
/// items. An item walks the output positions in ascending order and adds each (c, kh) segment to its input row with one masked 8-lane add, so
/// every dx element receives its terms in the same order as <see cref="Im2ColReference.Backward"/>
/// and the result is bit for bit the reference's, whatever the thread count and block size.
/// Lanes outside the window add +0, which leaves any sum that started from +0 unchanged.
/// </para>
/// Without 256-bit SIMD, or for KW &gt; 8, the same partition runs scalar loops.
/// </summary>
public static unsafe class Im2Col
{
    private const int Lanes = 8; // Vector256<float>.Count
    /// <summary>col2im keeps an item's dx planes at or below this many floats (32 KB, within L1; 16 KB measured slower).</summary>
    private const int BlockFloats = 8192;

    private struct Job
    {
        public float* X, Cols;
        public long XLength, ColsLength;
        public ConvGeometry G;
        public int ChannelBlock, BlocksPerImage;
        public int Items, Tasks;
    }

    /// <summary>
    /// Items [begin, end) of task t: one contiguous range per worker, so neighbouring outputs (and the
    /// cache lines they share) stay on one thread. Each item's result does not depend on the split.
    /// </summary>
    internal static (int Begin, int End) Range(int task, int tasks, int items) =>
        ((int)((long)items * task / tasks), (int)((long)items * (task + 1) / tasks));

    /// <summary>Fills cols [Positions, PatchLength] from x [N, C, H, W].</summary>
    public static void Forward(ConvGeometry g, ReadOnlySpan<float> x, Span<float> cols, WorkerPool pool)
    {
        Check(g, x.Length, cols.Length);
        if (g.OH <= 0 || g.OW <= 0) return;
        fixed (float* px = x, pc = cols)
        {
            int rows = g.N * g.OH, tasks = Math.Min(pool.ThreadCount, rows);
            var job = new Job { X = px, Cols = pc, XLength = x.Length, ColsLength = cols.Length, G = g, Items = rows, Tasks = tasks };
            pool.Run(tasks, &ForwardRows, &job);
        }
    }

    /// <summary>dx [N, C, H, W] = col2im(dcols [Positions, PatchLength]): overwrites dx.</summary>
    public static void Backward(ConvGeometry g, ReadOnlySpan<float> dcols, Span<float> dx, WorkerPool pool)
    {
        Check(g, dx.Length, dcols.Length);
        if (g.N <= 0 || g.C <= 0) return;
        int plane = g.H * g.W;
        // Blocks small enough to stay in L1, and enough of them to keep every worker busy.
        int blocks = Math.Max((int)Math.Min(((long)g.C * plane + BlockFloats - 1) / BlockFloats, g.C), 1);
        int wanted = (2 * pool.ThreadCount + g.N - 1) / g.N;
        blocks = Math.Min(Math.Max(blocks, wanted), g.C);
        int channelBlock = (g.C + blocks - 1) / blocks;
        blocks = (g.C + channelBlock - 1) / channelBlock;
        fixed (float* px = dx, pc = dcols)
        {
            var job = new Job
            {
                X = px, Cols = pc, XLength = dx.Length, ColsLength = dcols.Length, G = g,
                ChannelBlock = channelBlock, BlocksPerImage = blocks,
                Items = g.N * blocks, Tasks = Math.Min(pool.ThreadCount, g.N * blocks),
            };
            pool.Run(job.Tasks, &BackwardBlocks, &job);
        }
    }

    private static void Check(ConvGeometry g, int xLength, int colsLength)
    {
        if (xLength < (long)g.N * g.C * g.H * g.W) throw new ArgumentException("im2col: image span too short");
        if (colsLength < (long)g.Positions * g.PatchLength) throw new ArgumentException("im2col: column span too short");
    }

    /// <summary>Lanes i with 0 &lt;= ix0 + i &lt; w (and i &lt; kw) all ones, the others zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WindowMask(int ix0, int w, int kw)
    {
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        var ix = lane + Vector256.Create(ix0);
        var inside = Vector256.GreaterThanOrEqual(ix, Vector256<int>.Zero)
                     & Vector256.LessThan(ix, Vector256.Create(w))
                     & Vector256.LessThan(lane, Vector256.Create(kw));
        return inside.AsSingle();
    }

    private static void ForwardRows(void* args, int task)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var (begin, end) = Range(task, j.Tasks, j.Items);
        float* limit = j.Cols + (long)end * j.G.OW * j.G.PatchLength;
        for (int row = begin; row < end; row++) ForwardRow(args, row, limit);
    }

    /// <summary>Output row (n, oh) = <paramref name="row"/>: its OW patch rows. No store may reach <paramref name="limit"/> (the worker's end).</summary>
    private static void ForwardRow(void* args, int row, float* limit)
    {
        // Fields go to locals first: stores through float* could alias the job, so the JIT would reload them.
        ref Job j = ref Unsafe.AsRef<Job>(args);
        float* xAll = j.X, xEnd = j.X + j.XLength;
        ConvGeometry g = j.G;
        int c = g.C, h = g.H, w = g.W, kh = g.KH, kw = g.KW, s = g.Stride, p = g.Padding;
        int oh = g.OH, ow = g.OW, k = c * kh * kw, plane = h * w;
        int n = row / oh, y = row - n * oh;
        float* image = xAll + (long)n * c * plane;
        float* rows = j.Cols + (long)row * ow * k;
        int iy0 = y * s - p;
        int kyLo = Math.Clamp(-iy0, 0, kh), kyHi = Math.Clamp(h - iy0, kyLo, kh);
        bool vector = Vector256.IsHardwareAccelerated && kw <= Lanes;
        for (int x = 0; x < ow; x++)
        {
            float* dst = rows + (long)x * k;
            int ix0 = x * s - p;
            // Lowest and highest input addresses this position loads (8 lanes per valid row).
            float* first = image + (long)(iy0 + kyLo) * w + ix0;
            float* last = image + (long)(c - 1) * plane + (long)(iy0 + kyHi - 1) * w + ix0 + Lanes;
            bool loadsInside = kyLo == kyHi || first >= xAll && last <= xEnd;
            bool fast = vector && loadsInside && dst + k - kw + Lanes <= limit;
            if (fast) ForwardPositionVector(first, dst, WindowMask(ix0, w, kw), c, kh, kw, w, plane, kyLo, kyHi);
            else ForwardPositionScalar(image, dst, c, kh, kw, h, w, iy0, ix0);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ForwardPositionVector(float* src, float* dst, Vector256<float> mask,
        int c, int kh, int kw, int w, int plane, int kyLo, int kyHi)
    {
        for (int ci = 0; ci < c; ci++, src += plane)
        {
            int ky = 0;
            for (; ky < kyLo; ky++, dst += kw) Vector256<float>.Zero.Store(dst);
            float* s = src;
            for (; ky < kyHi; ky++, dst += kw, s += w) (Vector256.Load(s) & mask).Store(dst);
            for (; ky < kh; ky++, dst += kw) Vector256<float>.Zero.Store(dst);
        }
    }

    private static void ForwardPositionScalar(float* image, float* dst, int c, int kh, int kw, int h, int w, int iy0, int ix0)
    {
        int kxLo = Math.Clamp(-ix0, 0, kw), kxHi = Math.Clamp(w - ix0, kxLo, kw);
        for (int ci = 0; ci < c; ci++)
        {
            float* plane = image + (long)ci * h * w;
            for (int ky = 0; ky < kh; ky++, dst += kw)
            {
                int iy = iy0 + ky;
                if ((uint)iy >= (uint)h)
                {
                    new Span<float>(dst, kw).Clear();
                    continue;
                }
                float* src = plane + (long)iy * w + ix0;
                int kx = 0;
                for (; kx < kxLo; kx++) dst[kx] = 0;
                for (; kx < kxHi; kx++) dst[kx] = src[kx];
                for (; kx < kw; kx++) dst[kx] = 0;
            }
        }
    }

    private static void BackwardBlocks(void* args, int task)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var (begin, end) = Range(task, j.Tasks, j.Items);
        for (int block = begin; block < end; block++) BackwardBlock(args, block);
    }

    /// <summary>Item (n, channel block): overwrites those dx planes with the sum of their patch entries.</summary>
    private static void BackwardBlock(void* args, int task)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        float* colsAll = j.Cols, colsEnd = j.Cols + j.ColsLength;
        ConvGeometry g = j.G;
        int blocks = j.BlocksPerImage, channelBlock = j.ChannelBlock;
        int c = g.C, h = g.H, w = g.W, kh = g.KH, kw = g.KW, s = g.Stride, p = g.Padding;
        int oh = g.OH, ow = g.OW, k = c * kh * kw, plane = h * w;
        int n = task / blocks, b = task - n * blocks;
        int c0 = b * channelBlock, cb = Math.Min(c, c0 + channelBlock) - c0;
        float* planes = j.X + ((long)n * c + c0) * plane;
        float* planesEnd = planes + (long)cb * plane;
        new Span<float>(planes, cb * plane).Clear();
        bool vector = Vector256.IsHardwareAccelerated && kw <= Lanes;
        int segments = cb * kh * kw;
        for (int y = 0; y < oh; y++)
        {
            int iy0 = y * s - p;
            int kyLo = Math.Clamp(-iy0, 0, kh), kyHi = Math.Clamp(h - iy0, kyLo, kh);
            if (kyLo == kyHi) continue;
            float* src = colsAll + (long)(n * oh + y) * ow * k + (long)c0 * kh * kw;
            for (int x = 0; x < ow; x++, src += k)
            {
                int ix0 = x * s - p;
                float* first = planes + (long)(iy0 + kyLo) * w + ix0;
                float* last = planes + (long)(cb - 1) * plane + (long)(iy0 + kyHi - 1) * w + ix0 + Lanes;
                bool fast = vector && first >= planes && last <= planesEnd && src + segments - kw + Lanes <= colsEnd;
                if (fast) BackwardPositionVector(src, first, WindowMask(ix0, w, kw), cb, kh, kw, w, plane, kyLo, kyHi);
                else BackwardPositionScalar(src, planes, cb, kh, kw, h, w, iy0, ix0);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BackwardPositionVector(float* src, float* dst, Vector256<float> mask,
        int cb, int kh, int kw, int w, int plane, int kyLo, int kyHi)
    {
        int rowsSkipped = (kh - (kyHi - kyLo)) * kw;
        src += kyLo * kw;
        for (int ci = 0; ci < cb; ci++, dst += plane, src += rowsSkipped)
        {
            float* d = dst;
            for (int ky = kyLo; ky < kyHi; ky++, src += kw, d += w)
                (Vector256.Load(d) + (Vector256.Load(src) & mask)).Store(d);
        }
    }

    private static void BackwardPositionScalar(float* src, float* planes, int cb, int kh, int kw, int h, int w, int iy0, int ix0)
    {
        int kxLo = Math.Clamp(-ix0, 0, kw), kxHi = Math.Clamp(w - ix0, kxLo, kw);
        for (int ci = 0; ci < cb; ci++)
        {
            float* plane = planes + (long)ci * h * w;
            for (int ky = 0; ky < kh; ky++, src += kw)
            {
                int iy = iy0 + ky;
                if ((uint)iy >= (uint)h) continue;
                float* d = plane + (long)iy * w + ix0;
                for (int kx = kxLo; kx < kxHi; kx++) d[kx] += src[kx];
            }
        }
    }
}

/// <summary>
/// Plain-loop twin of <see cref="Im2Col"/>, single-threaded: the test oracle. Backward visits the
/// output positions in ascending order, the order in which every dx element receives its terms.
/// </summary>
internal static class Im2ColReference
{
    public static void Forward(ConvGeometry g, ReadOnlySpan<float> x, Span<float> cols)
    {
        int oh = g.OH, ow = g.OW, k = g.PatchLength;
        for (int n = 0; n < g.N; n++)
        for (int y = 0; y < oh; y++)
        for (int xo = 0; xo < ow; xo++)
        for (int c = 0; c < g.C; c++)
        for (int ky = 0; ky < g.KH; ky++)
        for (int kx = 0; kx < g.KW; kx++)
        {
            int iy = y * g.Stride - g.Padding + ky, ix = xo * g.Stride - g.Padding + kx;
            bool inside = (uint)iy < (uint)g.H && (uint)ix < (uint)g.W;
            cols[((n * oh + y) * ow + xo) * k + (c * g.KH + ky) * g.KW + kx] =
                inside ? x[((n * g.C + c) * g.H + iy) * g.W + ix] : 0;
        }
    }

    public static void Backward(ConvGeometry g, ReadOnlySpan<float> dcols, Span<float> dx)
    {
        int oh = g.OH, ow = g.OW, k = g.PatchLength;
        dx[..(g.N * g.C * g.H * g.W)].Clear();
        for (int n = 0; n < g.N; n++)
        for (int y = 0; y < oh; y++)
        for (int xo = 0; xo < ow; xo++)
        for (int c = 0; c < g.C; c++)
        for (int ky = 0; ky < g.KH; ky++)
        for (int kx = 0; kx < g.KW; kx++)
        {
            int iy = y * g.Stride - g.Padding + ky, ix = xo * g.Stride - g.Padding + kx;
            if ((uint)iy < (uint)g.H && (uint)ix < (uint)g.W)
                dx[((n * g.C + c) * g.H + iy) * g.W + ix] += dcols[((n * oh + y) * ow + xo) * k + (c * g.KH + ky) * g.KW + kx];
        }
    }
}
