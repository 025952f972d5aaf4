using System.Runtime.CompilerServices;
using MeProp.Threading;

namespace MeProp.Kernels;

/// <summary>
/// Max pooling over KxK windows with stride S, no padding, floor mode (as PyTorch's defaults).
/// Legend: x [N, C, H, W], y [N, C, OH, OW], OH = (H - K) / S + 1; argmax[n, c, oh, ow] is the index
/// of the chosen input within its plane (the first maximum in row-major window order wins ties).
/// Threads split the N*C planes.
/// </summary>
public static unsafe class MaxPooling
{
    private struct Job
    {
        public float* X, Y;
        public int* Argmax;
        public int H, W, OH, OW, K, S;
    }

    public static void Forward(ReadOnlySpan<float> x, Span<float> y, Span<int> argmax, int planes, int h, int w, int k, int s, WorkerPool pool)
    {
        int oh = (h - k) / s + 1, ow = (w - k) / s + 1;
        if (x.Length < planes * h * w || y.Length < planes * oh * ow || argmax.Length < planes * oh * ow)
            throw new ArgumentException("max pooling: span too short");
        fixed (float* px = x, py = y)
        fixed (int* pa = argmax)
        {
            var job = new Job { X = px, Y = py, Argmax = pa, H = h, W = w, OH = oh, OW = ow, K = k, S = s };
            pool.Run(planes, &ForwardPlane, &job);
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
            var job = new Job { X = px, Y = py, Argmax = pa, H = h, W = w, OH = oh, OW = ow, K = k, S = s };
            pool.Run(planes, &BackwardPlane, &job);
        }
    }

    private static void ForwardPlane(void* args, int plane)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        float* x = j.X + (long)plane * j.H * j.W;
        float* y = j.Y + (long)plane * j.OH * j.OW;
        int* arg = j.Argmax + (long)plane * j.OH * j.OW;
        for (int oy = 0; oy < j.OH; oy++)
        for (int ox = 0; ox < j.OW; ox++)
        {
            int best = oy * j.S * j.W + ox * j.S;
            float bestValue = x[best];
            for (int ky = 0; ky < j.K; ky++)
            {
                int rowStart = (oy * j.S + ky) * j.W + ox * j.S;
                for (int kx = 0; kx < j.K; kx++)
                {
                    float v = x[rowStart + kx];
                    // NaN propagates as in PyTorch: a NaN beats everything.
                    if (v > bestValue || float.IsNaN(v) && !float.IsNaN(bestValue)) { bestValue = v; best = rowStart + kx; }
                }
            }
            y[oy * j.OW + ox] = bestValue;
            arg[oy * j.OW + ox] = best;
        }
    }

    private static void BackwardPlane(void* args, int plane)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        float* dx = j.X + (long)plane * j.H * j.W;
        float* dy = j.Y + (long)plane * j.OH * j.OW;
        int* arg = j.Argmax + (long)plane * j.OH * j.OW;
        new Span<float>(dx, j.H * j.W).Clear();
        for (int i = 0; i < j.OH * j.OW; i++) dx[arg[i]] += dy[i];
    }
}
