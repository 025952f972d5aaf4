using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MeProp.Threading;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace MeProp.Kernels;

/// <summary>
/// Average pooling as PyTorch's avg_pool2d without padding, floor mode, over KxK windows with stride S.
/// Legend: x [N, C, H, W], y [N, C, OH, OW], OH = (H - K) / S + 1, OW = (W - K) / S + 1; a plane is one
/// (n, c) image of H·W values, P = N·C planes.
/// Forward: y = (window sum, added from 0 in row-major window order) / (K·K), divided as PyTorch does.
/// Backward: every input of a window receives dy / (K·K), windows in row-major order, added where
/// windows overlap (S &lt; K); inputs outside every window (floor mode) get 0. dx is overwritten.
/// Global pooling (the window is the whole plane, any H and W): y[p] = Σ x[p, :] / (H·W),
/// dx[p, :] = dy[p] / (H·W).
/// Threads split the P planes into one contiguous range per worker (small planes share cache lines);
/// a plane's result does not depend on the split, so it is the same for any thread count.
/// <para>
/// 2x2 windows with stride 2 (the usual downsampling) have a SIMD path for OW &gt;= 8: 8 windows at a
/// time, the four corners split out of two input rows (AVX2) and added in the same order as the plain
/// loop, so both give the same bits; its backward writes each window's four dx entries directly (any
/// 256-bit SIMD), with no clearing pass. Other windows run plain loops: they are rare in the networks
/// this library builds, and their strided reads would need gathers.
/// </para>
/// </summary>
public static unsafe class AvgPooling
{
    private struct Job
    {
        public float* X, Y;
        public int H, W, OH, OW, K, S;
        public int Planes, Tasks;
    }

    private struct GlobalJob
    {
        public float* X, Y;
        public int PlaneSize, Planes, Tasks;
    }

    /// <summary>y[p, oy, ox] = Σ of the KxK window at (oy·S, ox·S) / (K·K); overwrites y.</summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y, int planes, int h, int w, int k, int s, WorkerPool pool)
    {
        var (oh, ow) = Check(x.Length, y.Length, planes, h, w, k, s);
        fixed (float* px = x, py = y)
        {
            var job = new Job { X = px, Y = py, H = h, W = w, OH = oh, OW = ow, K = k, S = s, Planes = planes, Tasks = Math.Min(pool.ThreadCount, planes) };
            pool.Run(job.Tasks, &ForwardPlanes, &job);
        }
    }

    /// <summary>dx = Σ over the windows holding each input of dy / (K·K), 0 outside every window; overwrites dx.</summary>
    public static void Backward(ReadOnlySpan<float> dy, Span<float> dx, int planes, int h, int w, int k, int s, WorkerPool pool)
    {
        var (oh, ow) = Check(dx.Length, dy.Length, planes, h, w, k, s);
        fixed (float* pdx = dx, pdy = dy)
        {
            var job = new Job { X = pdx, Y = pdy, H = h, W = w, OH = oh, OW = ow, K = k, S = s, Planes = planes, Tasks = Math.Min(pool.ThreadCount, planes) };
            pool.Run(job.Tasks, &BackwardPlanes, &job);
        }
    }

    /// <summary>y[p] = Σ x[p, :] / planeSize (planeSize = H·W), the sum in float32 with SIMD; overwrites y.</summary>
    public static void GlobalForward(ReadOnlySpan<float> x, Span<float> y, int planes, int planeSize, WorkerPool pool)
    {
        CheckGlobal(x.Length, y.Length, planes, planeSize);
        fixed (float* px = x, py = y)
        {
            var job = new GlobalJob { X = px, Y = py, PlaneSize = planeSize, Planes = planes, Tasks = Math.Min(pool.ThreadCount, planes) };
            pool.Run(job.Tasks, &GlobalForwardPlanes, &job);
        }
    }

    /// <summary>dx[p, :] = dy[p] / planeSize; overwrites dx.</summary>
    public static void GlobalBackward(ReadOnlySpan<float> dy, Span<float> dx, int planes, int planeSize, WorkerPool pool)
    {
        CheckGlobal(dx.Length, dy.Length, planes, planeSize);
        fixed (float* pdx = dx, pdy = dy)
        {
            var job = new GlobalJob { X = pdx, Y = pdy, PlaneSize = planeSize, Planes = planes, Tasks = Math.Min(pool.ThreadCount, planes) };
            pool.Run(job.Tasks, &GlobalBackwardPlanes, &job);
        }
    }

    /// <summary>Checks the geometry and that the input-side and output-side spans are long enough; returns (OH, OW).</summary>
    private static (int OH, int OW) Check(int inputLength, int outputLength, int planes, int h, int w, int k, int s)
    {
        if (k < 1 || s < 1 || h < k || w < k || planes < 0)
            throw new ArgumentException($"average pooling: {planes} planes of {h}x{w} cannot take a {k}x{k} window with stride {s}");
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
        if (inputLength < (long)planes * h * w || outputLength < (long)planes * oh * ow)
            throw new ArgumentException("average pooling: span too short");
        return (oh, ow);
    }

    private static void CheckGlobal(int inputLength, int outputLength, int planes, int planeSize)
    {
        if (planeSize < 1 || planes < 0) throw new ArgumentException($"global average pooling: {planes} planes of {planeSize} values");
        if (inputLength < (long)planes * planeSize || outputLength < planes)
            throw new ArgumentException("global average pooling: span too short");
    }

    private static void ForwardPlanes(void* args, int task)
    {
        // Fields go to locals first: stores through float* could alias the job, so the JIT would reload them.
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int h = j.H, w = j.W, oh = j.OH, ow = j.OW, k = j.K, s = j.S;
        float* x = j.X, y = j.Y;
        bool simd = k == 2 && s == 2 && ow >= 8 && Avx2.IsSupported;
        var (begin, end) = Im2Col.Range(task, j.Tasks, j.Planes);
        for (int p = begin; p < end; p++)
        {
            float* xPlane = x + (long)p * h * w;
            float* yPlane = y + (long)p * oh * ow;
            if (simd) Forward2x2(xPlane, yPlane, w, oh, ow);
            else ForwardGeneric(xPlane, yPlane, w, oh, ow, k, s);
        }
    }

    /// <summary>One plane, 2x2 windows, stride 2, OW &gt;= 8: 8 windows at a time.</summary>
    private static void Forward2x2(float* x, float* y, int w, int oh, int ow)
    {
        var four = Vector256.Create(4f);
        for (int oy = 0; oy < oh; oy++)
        {
            float* top = x + 2 * oy * w, bottom = top + w;
            float* yRow = y + oy * ow;
            for (int ox = 0; ; ox += 8)
            {
                // The last group overlaps the one before when OW is not a multiple of 8: same values again.
                if (ox + 8 > ow) ox = ow - 8;
                var t0 = Vector256.Load(top + 2 * ox);
                var t1 = Vector256.Load(top + 2 * ox + 8);
                var b0 = Vector256.Load(bottom + 2 * ox);
                var b1 = Vector256.Load(bottom + 2 * ox + 8);
                // vshufps splits the corners within 128-bit lanes: windows come out in order 0 1 4 5 2 3 6 7.
                var topLeft = Avx.Shuffle(t0, t1, 0b10_00_10_00);
                var topRight = Avx.Shuffle(t0, t1, 0b11_01_11_01);
                var bottomLeft = Avx.Shuffle(b0, b1, 0b10_00_10_00);
                var bottomRight = Avx.Shuffle(b0, b1, 0b11_01_11_01);
                // The plain loop's order, from 0 (which turns a -0 first term into +0).
                var sum = Vector256<float>.Zero + topLeft + topRight + bottomLeft + bottomRight;
                var mean = sum / four;
                // Back to window order 0..7: swap the middle 64-bit pairs.
                Avx2.Permute4x64(mean.AsDouble(), 0b11_01_10_00).AsSingle().Store(yRow + ox);
                if (ox + 8 == ow) break;
            }
        }
    }

    private static void ForwardGeneric(float* x, float* y, int w, int oh, int ow, int k, int s)
    {
        float divisor = k * k;
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            float* window = x + oy * s * w + ox * s;
            float sum = 0f;
            for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                sum += window[ky * w + kx];
            y[oy * ow + ox] = sum / divisor;
        }
    }

    private static void BackwardPlanes(void* args, int task)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int h = j.H, w = j.W, oh = j.OH, ow = j.OW, k = j.K, s = j.S;
        float* dx = j.X, dy = j.Y;
        bool simd = k == 2 && s == 2 && ow >= 8 && Vector256.IsHardwareAccelerated;
        var (begin, end) = Im2Col.Range(task, j.Tasks, j.Planes);
        for (int p = begin; p < end; p++)
        {
            float* dxPlane = dx + (long)p * h * w;
            float* dyPlane = dy + (long)p * oh * ow;
            if (simd) Backward2x2(dxPlane, dyPlane, h, w, oh, ow);
            else BackwardGeneric(dxPlane, dyPlane, h, w, oh, ow, k, s);
        }
    }

    /// <summary>
    /// One plane, 2x2 windows, stride 2, OW &gt;= 8: writes every dx entry, dy / 4 (plus +0, as the plain
    /// loop adds it to a cleared dx) in each window's four inputs and 0 in the row and column that floor
    /// mode leaves out; 8 windows at a time (the last group of a row overlaps the one before and writes
    /// the same values again).
    /// </summary>
    private static void Backward2x2(float* dx, float* dy, int h, int w, int oh, int ow)
    {
        var four = Vector256.Create(4f);
        for (int oy = 0; oy < oh; oy++)
        {
            float* top = dx + 2 * oy * w, bottom = top + w;
            float* dyRow = dy + oy * ow;
            for (int ox = 0; ; ox += 8)
            {
                if (ox + 8 > ow) ox = ow - 8;
                var share = Vector256.Load(dyRow + ox) / four + Vector256<float>.Zero;
                // Each window's share twice: lanes 2i and 2i + 1 cover window i's two columns.
                var windows0To3 = Vector256.Shuffle(share, Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3));
                var windows4To7 = Vector256.Shuffle(share, Vector256.Create(4, 4, 5, 5, 6, 6, 7, 7));
                windows0To3.Store(top + 2 * ox);
                windows4To7.Store(top + 2 * ox + 8);
                windows0To3.Store(bottom + 2 * ox);
                windows4To7.Store(bottom + 2 * ox + 8);
                if (ox + 8 == ow) break;
            }
            // Floor mode: an odd width leaves a last column that no window covers.
            for (int ix = 2 * ow; ix < w; ix++) top[ix] = bottom[ix] = 0f;
        }
        new Span<float>(dx + 2 * oh * w, (h - 2 * oh) * w).Clear();
    }

    private static void BackwardGeneric(float* dx, float* dy, int h, int w, int oh, int ow, int k, int s)
    {
        float divisor = k * k;
        new Span<float>(dx, h * w).Clear();
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            float* window = dx + oy * s * w + ox * s;
            float share = dy[oy * ow + ox] / divisor;
            for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                window[ky * w + kx] += share;
        }
    }

    private static void GlobalForwardPlanes(void* args, int task)
    {
        ref GlobalJob j = ref Unsafe.AsRef<GlobalJob>(args);
        int size = j.PlaneSize;
        float* x = j.X, y = j.Y;
        var (begin, end) = Im2Col.Range(task, j.Tasks, j.Planes);
        for (int p = begin; p < end; p++)
            y[p] = TensorPrimitives.Sum(new ReadOnlySpan<float>(x + (long)p * size, size)) / size;
    }

    private static void GlobalBackwardPlanes(void* args, int task)
    {
        ref GlobalJob j = ref Unsafe.AsRef<GlobalJob>(args);
        int size = j.PlaneSize;
        float* dx = j.X, dy = j.Y;
        var (begin, end) = Im2Col.Range(task, j.Tasks, j.Planes);
        for (int p = begin; p < end; p++)
            new Span<float>(dx + (long)p * size, size).Fill(dy[p] / size);
    }
}

/// <summary>
/// Plain-loop twin of <see cref="AvgPooling"/>, single-threaded: the test oracle. Window sums and shares
/// are float32 in the same order as the kernel (so the two agree bit for bit); the global sums are
/// float64, since a plane can hold thousands of values.
/// </summary>
internal static class AvgPoolingReference
{
    public static void Forward(ReadOnlySpan<float> x, Span<float> y, int planes, int h, int w, int k, int s)
    {
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
        for (int p = 0; p < planes; p++)
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            float sum = 0f;
            for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                sum += x[p * h * w + (oy * s + ky) * w + ox * s + kx];
            y[(p * oh + oy) * ow + ox] = sum / (k * k);
        }
    }

    public static void Backward(ReadOnlySpan<float> dy, Span<float> dx, int planes, int h, int w, int k, int s)
    {
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
        dx[..(planes * h * w)].Clear();
        for (int p = 0; p < planes; p++)
        for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
        {
            float share = dy[(p * oh + oy) * ow + ox] / (k * k);
            for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                dx[p * h * w + (oy * s + ky) * w + ox * s + kx] += share;
        }
    }

    public static void GlobalForward(ReadOnlySpan<float> x, Span<float> y, int planes, int planeSize)
    {
        for (int p = 0; p < planes; p++)
        {
            double sum = 0;
            for (int i = 0; i < planeSize; i++) sum += x[p * planeSize + i];
            y[p] = (float)(sum / planeSize);
        }
    }

    public static void GlobalBackward(ReadOnlySpan<float> dy, Span<float> dx, int planes, int planeSize)
    {
        for (int p = 0; p < planes; p++)
        for (int i = 0; i < planeSize; i++)
            dx[p * planeSize + i] = dy[p] / planeSize;
    }
}
