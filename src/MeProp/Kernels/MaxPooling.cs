using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MeProp.Threading;

namespace MeProp.Kernels;

/// <summary>
/// Max pooling over KxK windows with stride S, no padding, floor mode (as PyTorch's defaults).
/// Legend: x [N, C, H, W], y [N, C, OH, OW], OH = (H - K) / S + 1; argmax[n, c, oh, ow] is the index
/// of the chosen input within its plane (the first maximum in row-major window order wins ties; a NaN
/// beats every number, and the first NaN wins).
/// Threads split the N*C planes into one contiguous range per worker (small planes share cache lines).
/// <para>
/// 2x2 windows with stride 2 have a SIMD path (AVX2 forward, any 256-bit SIMD backward): 8 windows at a time, the four corners split out of two
/// input rows, then reduced as (top-left vs top-right) vs (bottom-left vs bottom-right). "First
/// maximum" is the first element of the largest class of a total preorder (NaN above all numbers), so
/// that pairwise reduction, which keeps the left operand on ties, picks the same element as the
/// row-major scan. Its backward (for OW >= 8) writes each window's four dx entries directly (no clearing
/// pass), and falls back to clear-and-scatter for a plane whose argmax is not inside its own windows.
/// Other windows run plain loops.
/// </para>
/// </summary>
public static unsafe class MaxPooling
{
    private struct Job
    {
        public float* X, Y;
        public int* Argmax;
        public long XLength;
        public int H, W, OH, OW, K, S;
        public int Planes, Tasks;
    }

    public static void Forward(ReadOnlySpan<float> x, Span<float> y, Span<int> argmax, int planes, int h, int w, int k, int s, WorkerPool pool)
    {
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
        if (x.Length < planes * h * w || y.Length < planes * oh * ow || argmax.Length < planes * oh * ow)
            throw new ArgumentException("max pooling: span too short");
        fixed (float* px = x, py = y)
        fixed (int* pa = argmax)
        {
            var job = new Job { X = px, Y = py, Argmax = pa, XLength = x.Length, H = h, W = w, OH = oh, OW = ow, K = k, S = s, Planes = planes, Tasks = Math.Min(pool.ThreadCount, planes) };
            pool.Run(job.Tasks, &ForwardPlanes, &job);
        }
    }

    /// <summary>dx = 0 except dx[argmax] += dy; overwrites dx.</summary>
    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<int> argmax, Span<float> dx, int planes, int h, int w, int k, int s, WorkerPool pool)
    {
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
        if (dx.Length < planes * h * w || dy.Length < planes * oh * ow || argmax.Length < planes * oh * ow)
            throw new ArgumentException("max pooling: span too short");
        fixed (float* px = dx, py = dy)
        fixed (int* pa = argmax)
        {
            var job = new Job { X = px, Y = py, Argmax = pa, XLength = dx.Length, H = h, W = w, OH = oh, OW = ow, K = k, S = s, Planes = planes, Tasks = Math.Min(pool.ThreadCount, planes) };
            pool.Run(job.Tasks, &BackwardPlanes, &job);
        }
    }

    private static void ForwardPlanes(void* args, int task)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var (begin, end) = Im2Col.Range(task, j.Tasks, j.Planes);
        for (int plane = begin; plane < end; plane++) ForwardPlane(args, plane);
    }

    private static void ForwardPlane(void* args, int plane)
    {
        // Fields go to locals first: stores through float* could alias the job, so the JIT would reload them.
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int h = j.H, w = j.W, oh = j.OH, ow = j.OW, k = j.K, s = j.S;
        float* xEnd = j.X + j.XLength;
        float* x = j.X + (long)plane * h * w;
        float* y = j.Y + (long)plane * oh * ow;
        int* arg = j.Argmax + (long)plane * oh * ow;
        if (k == 2 && s == 2 && Avx2.IsSupported) Forward2x2(x, xEnd, y, arg, w, oh, ow);
        else ForwardGeneric(x, y, arg, w, oh, ow, k, s);
    }

    /// <summary>True where v replaces best in the row-major scan: v &gt; best, or v is NaN and best is not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Beats(Vector256<float> v, Vector256<float> best) =>
        Vector256.AndNot(Vector256.Equals(best, best), Vector256.LessThanOrEqual(v, best));

    /// <summary>
    /// Windows i = 0..7 whose top-left corners are top[2i] and bottom[2i] (bottom = top + w);
    /// index = plane index of top[0]. Returns each window's maximum and its plane index.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> Best, Vector256<int> Index) Windows8(float* top, float* bottom, int index, int w)
    {
        var t0 = Vector256.Load(top);
        var t1 = Vector256.Load(top + 8);
        var b0 = Vector256.Load(bottom);
        var b1 = Vector256.Load(bottom + 8);
        // vshufps splits the corners within 128-bit lanes: windows come out in order 0 1 4 5 2 3 6 7.
        var tl = Avx.Shuffle(t0, t1, 0b10_00_10_00);
        var tr = Avx.Shuffle(t0, t1, 0b11_01_11_01);
        var bl = Avx.Shuffle(b0, b1, 0b10_00_10_00);
        var br = Avx.Shuffle(b0, b1, 0b11_01_11_01);
        var twiceWindow = Vector256.Create(0, 2, 8, 10, 4, 6, 12, 14);
        var one = Vector256<int>.One;
        var rightTop = Beats(tr, tl);
        var top2 = Vector256.ConditionalSelect(rightTop, tr, tl);
        var topOffset = rightTop.AsInt32() & one;
        var rightBottom = Beats(br, bl);
        var bottom2 = Vector256.ConditionalSelect(rightBottom, br, bl);
        var bottomOffset = (rightBottom.AsInt32() & one) + Vector256.Create(w);
        var lower = Beats(bottom2, top2);
        var best = Vector256.ConditionalSelect(lower, bottom2, top2);
        var offset = Vector256.ConditionalSelect(lower.AsInt32(), bottomOffset, topOffset);
        var plane = Vector256.Create(index) + twiceWindow + offset;
        // Back to window order 0..7: swap the middle 64-bit pairs.
        best = Avx2.Permute4x64(best.AsDouble(), 0b11_01_10_00).AsSingle();
        plane = Avx2.Permute4x64(plane.AsDouble(), 0b11_01_10_00).AsInt32();
        return (best, plane);
    }

    private static void Forward2x2(float* x, float* xEnd, float* y, int* arg, int w, int oh, int ow)
    {
        for (int oy = 0; oy < oh; oy++)
        {
            int rowIndex = 2 * oy * w;
            float* top = x + rowIndex, bottom = top + w;
            float* yRow = y + oy * ow;
            int* argRow = arg + oy * ow;
            if (ow >= 8)
            {
                for (int ox = 0; ; ox += 8)
                {
                    // The last group overlaps the one before when OW is not a multiple of 8: same values again.
                    if (ox + 8 > ow) ox = ow - 8;
                    var (best, index) = Windows8(top + 2 * ox, bottom + 2 * ox, rowIndex + 2 * ox, w);
                    best.Store(yRow + ox);
                    index.Store(argRow + ox);
                    if (ox + 8 == ow) break;
                }
            }
            else if (bottom + 16 <= xEnd)
            {
                // Fewer than 8 windows: compute 8 (the extra lanes read past the row) and keep OW of them.
                var (best, index) = Windows8(top, bottom, rowIndex, w);
                for (int ox = 0; ox < ow; ox++)
                {
                    yRow[ox] = best.GetElement(ox);
                    argRow[ox] = index.GetElement(ox);
                }
            }
            else
            {
                for (int ox = 0; ox < ow; ox++) Window(x, w, rowIndex + 2 * ox, 2, out yRow[ox], out argRow[ox]);
            }
        }
    }

    private static void ForwardGeneric(float* x, float* y, int* arg, int w, int oh, int ow, int k, int s)
    {
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
            Window(x, w, oy * s * w + ox * s, k, out y[oy * ow + ox], out arg[oy * ow + ox]);
    }

    /// <summary>The KxK window whose top-left corner is x[start]: first maximum (NaN beats all) and its index.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Window(float* x, int w, int start, int k, out float value, out int index)
    {
        int best = start;
        float bestValue = x[start];
        for (int ky = 0; ky < k; ky++)
        {
            int rowStart = start + ky * w;
            for (int kx = 0; kx < k; kx++)
            {
                float v = x[rowStart + kx];
                // v > best, or v is NaN and best is not.
                if (!(v <= bestValue) && !float.IsNaN(bestValue)) { bestValue = v; best = rowStart + kx; }
            }
        }
        value = bestValue;
        index = best;
    }

    private static void BackwardPlanes(void* args, int task)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int h = j.H, w = j.W, oh = j.OH, ow = j.OW, plane = h * w, windows = oh * ow;
        var (begin, end) = Im2Col.Range(task, j.Tasks, j.Planes);
        float* dx = j.X, dy = j.Y;
        int* arg = j.Argmax;
        if (j.K == 2 && j.S == 2 && ow >= 8 && Vector256.IsHardwareAccelerated)
        {
            for (int p = begin; p < end; p++)
            {
                float* dxPlane = dx + (long)p * plane;
                float* dyPlane = dy + (long)p * windows;
                int* argPlane = arg + (long)p * windows;
                if (Backward2x2(dxPlane, dyPlane, argPlane, h, w, oh, ow)) continue;
                new Span<float>(dxPlane, plane).Clear();
                Scatter(dxPlane, dyPlane, argPlane, windows);
            }
            return;
        }
        // Small or other windows: clear the task's planes in one pass, then scatter.
        new Span<float>(dx + (long)begin * plane, (end - begin) * plane).Clear();
        for (int p = begin; p < end; p++) Scatter(dx + (long)p * plane, dy + (long)p * windows, arg + (long)p * windows, windows);
    }

    /// <summary>dx[arg[i]] += dy[i] in order of i.</summary>
    private static void Scatter(float* dx, float* dy, int* arg, int count)
    {
        for (int i = 0; i < count; i++) dx[arg[i]] += dy[i];
    }

    /// <summary>
    /// Writes every dx entry of the plane: dy (plus +0, as the reference adds it to a cleared dx) where
    /// argmax points, zero elsewhere, 8 windows at a time (OW &gt;= 8; the last group of a row overlaps the
    /// one before and writes the same values again). Returns false when some argmax lies outside its own window.
    /// </summary>
    private static bool Backward2x2(float* dx, float* dy, int* arg, int h, int w, int oh, int ow)
    {
        var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        var below = Vector256.Create(w);
        var eight = Vector256.Create(8);
        var found = Vector256<int>.AllBitsSet; // every window so far has its argmax inside it
        for (int oy = 0; oy < oh; oy++)
        {
            int rowIndex = 2 * oy * w;
            float* top = dx + rowIndex, bottom = top + w;
            float* dyRow = dy + oy * ow;
            int* argRow = arg + oy * ow;
            for (int ox = 0; ; ox += 8)
            {
                if (ox + 8 > ow) ox = ow - 8;
                var g = Vector256.Load(dyRow + ox) + Vector256<float>.Zero;
                var a = Vector256.Load(argRow + ox);
                // Each window's dy and argmax twice: lanes 2i and 2i + 1 cover window i's two columns.
                var g0 = Vector256.Shuffle(g, Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3));
                var g1 = Vector256.Shuffle(g, Vector256.Create(4, 4, 5, 5, 6, 6, 7, 7));
                var a0 = Vector256.Shuffle(a, Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3));
                var a1 = Vector256.Shuffle(a, Vector256.Create(4, 4, 5, 5, 6, 6, 7, 7));
                var i0 = Vector256.Create(rowIndex + 2 * ox) + lane;
                var i1 = i0 + eight;
                var m00 = Vector256.Equals(a0, i0);
                var m01 = Vector256.Equals(a1, i1);
                var m10 = Vector256.Equals(a0, i0 + below);
                var m11 = Vector256.Equals(a1, i1 + below);
                (g0 & m00.AsSingle()).Store(top + 2 * ox);
                (g1 & m01.AsSingle()).Store(top + 2 * ox + 8);
                (g0 & m10.AsSingle()).Store(bottom + 2 * ox);
                (g1 & m11.AsSingle()).Store(bottom + 2 * ox + 8);
                var hit0 = m00 | m10;
                var hit1 = m01 | m11;
                found &= hit0 | Vector256.Shuffle(hit0, Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6));
                found &= hit1 | Vector256.Shuffle(hit1, Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6));
                if (ox + 8 == ow) break;
            }
            // Floor mode: an odd width leaves a last column that no window covers.
            for (int ix = 2 * ow; ix < w; ix++) top[ix] = bottom[ix] = 0f;
        }
        new Span<float>(dx + 2 * oh * w, (h - 2 * oh) * w).Clear();
        return Vector256.EqualsAll(found, Vector256<int>.AllBitsSet);
    }
}

/// <summary>Plain-loop twin of <see cref="MaxPooling"/>, single-threaded: the test oracle.</summary>
internal static class MaxPoolingReference
{
    public static void Forward(ReadOnlySpan<float> x, Span<float> y, Span<int> argmax, int planes, int h, int w, int k, int s)
    {
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
        for (int p = 0; p < planes; p++)
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            int best = oy * s * w + ox * s;
            float bestValue = x[p * h * w + best];
            for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
            {
                int index = (oy * s + ky) * w + ox * s + kx;
                float v = x[p * h * w + index];
                // NaN propagates as in PyTorch: a NaN beats everything.
                if (v > bestValue || float.IsNaN(v) && !float.IsNaN(bestValue)) { bestValue = v; best = index; }
            }
            y[(p * oh + oy) * ow + ox] = bestValue;
            argmax[(p * oh + oy) * ow + ox] = best;
        }
    }

    public static void Backward(ReadOnlySpan<float> dy, ReadOnlySpan<int> argmax, Span<float> dx, int planes, int h, int w, int k, int s)
    {
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
        dx[..(planes * h * w)].Clear();
        for (int p = 0; p < planes; p++)
        for (int i = 0; i < oh * ow; i++)
            dx[p * h * w + argmax[p * oh * ow + i]] += dy[p * oh * ow + i];
    }
}
