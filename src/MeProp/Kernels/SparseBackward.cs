using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MeProp.Sparsity;
using MeProp.Threading;

namespace MeProp.Kernels;

/// <summary>
/// Backward products of a layer from a <see cref="SparseGradient"/>, reading only the kept entries, so
/// the work is (kept entries) x (row length) instead of a dense product.
/// Legend: U units (output channels / features), P positions (rows of the input matrix X [P, K]:
/// im2col rows for conv, examples for linear), K row length (C·KH·KW or In), weight W [U, K].
/// Entries of unit u are (position, value) pairs, positions ascending.
/// </summary>
public static unsafe class SparseBackward
{
    private struct Job
    {
        public int* Counts, Positions;
        public float* Values, X, W, Dw, Db, Dx;
        public int Capacity, K, Units;
        public ConvGeometry Geometry;
    }

    /// <summary>dW[u, :] += Σ v·X[position, :] and db[u] += Σ v over u's entries. Threads split the units.</summary>
    public static void WeightGradient(SparseGradient g, ReadOnlySpan<float> x, int k, Span<float> dW, Span<float> db, WorkerPool pool)
    {
        if (x.Length < (long)g.PositionCount * k || dW.Length < g.Units * k || db.Length < g.Units)
            throw new ArgumentException("sparse weight gradient: span too short");
        fixed (int* counts = g.Counts, positions = g.Positions)
        fixed (float* values = g.Values, px = x, pdw = dW, pdb = db)
        {
            var job = new Job { Counts = counts, Positions = positions, Values = values, X = px, Dw = pdw, Db = pdb, Capacity = g.Capacity, K = k, Units = g.Units };
            pool.Run(g.Units, &WeightGradientUnit, &job);
        }
    }

    private static void WeightGradientUnit(void* args, int u)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int start = u * j.Capacity, count = j.Counts[u];
        float* dwRow = j.Dw + (long)u * j.K;
        float biasSum = 0;
        for (int e = start; e < start + count; e++)
        {
            float v = j.Values[e];
            biasSum += v;
            Axpy(dwRow, j.X + (long)j.Positions[e] * j.K, v, j.K);
        }
        j.Db[u] += biasSum;
    }

    /// <summary>
    /// dX[position, :] += v·W[u, :] for every entry (dX [P, K] is added into). Threads split the
    /// positions; each position sums its entries in unit order, so the result is deterministic.
    /// </summary>
    public static void RowInputGradient(SparseGradient g, ReadOnlySpan<float> w, int k, Span<float> dx, WorkerPool pool)
    {
        if (w.Length < g.Units * k || dx.Length < (long)g.PositionCount * k)
            throw new ArgumentException("sparse input gradient: span too short");
        fixed (int* counts = g.Counts, positions = g.Positions)
        fixed (float* values = g.Values, pw = w, pdx = dx)
        {
            var job = new Job { Counts = counts, Positions = positions, Values = values, W = pw, Dx = pdx, Capacity = g.Capacity, K = k, Units = g.Units };
            pool.Run(g.PositionCount, &RowInputGradientPosition, &job);
        }
    }

    private static void RowInputGradientPosition(void* args, int position)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        float* dxRow = j.Dx + (long)position * j.K;
        for (int u = 0; u < j.Units; u++)
        {
            int start = u * j.Capacity;
            int e = LowerBound(j.Positions + start, j.Counts[u], position);
            if (e < j.Counts[u] && j.Positions[start + e] == position)
                Axpy(dxRow, j.W + (long)u * j.K, j.Values[start + e], j.K);
        }
    }

    /// <summary>
    /// Convolution input gradient without im2col: for each entry at (n, oh, ow) of unit u,
    /// dx[n, oh·S-P+kh, ow·S-P+kw, :] += v·W[u, kh, kw, :] inside the image. dx is channels-last
    /// [N, H, W, C] and the weight [U, KH, KW, C], so each step is a SIMD row of C; dx is added into.
    /// Threads split the batch (an entry only touches its own image).
    /// </summary>
    public static void ConvInputGradient(SparseGradient g, ConvGeometry geometry, ReadOnlySpan<float> weightHwc, Span<float> dxNhwc, WorkerPool pool)
    {
        if (weightHwc.Length < g.Units * geometry.PatchLength || dxNhwc.Length < geometry.N * geometry.C * geometry.H * geometry.W)
            throw new ArgumentException("sparse conv input gradient: span too short");
        fixed (int* counts = g.Counts, positions = g.Positions)
        fixed (float* values = g.Values, pw = weightHwc, pdx = dxNhwc)
        {
            var job = new Job { Counts = counts, Positions = positions, Values = values, W = pw, Dx = pdx, Capacity = g.Capacity, Units = g.Units, Geometry = geometry };
            pool.Run(geometry.N, &ConvInputGradientImage, &job);
        }
    }

    private static void ConvInputGradientImage(void* args, int n)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var g = j.Geometry;
        int plane = g.OH * g.OW, c = g.C;
        int first = n * plane, end = first + plane;
        float* image = j.Dx + (long)n * g.H * g.W * c;
        for (int u = 0; u < j.Units; u++)
        {
            int start = u * j.Capacity, count = j.Counts[u];
            float* weight = j.W + (long)u * g.PatchLength;
            for (int e = LowerBound(j.Positions + start, count, first); e < count; e++)
            {
                int position = j.Positions[start + e];
                if (position >= end) break;
                float v = j.Values[start + e];
                int p = position - first;
                int oy = p / g.OW, ox = p - oy * g.OW;
                int iy0 = oy * g.Stride - g.Padding, ix0 = ox * g.Stride - g.Padding;
                for (int kh = 0; kh < g.KH; kh++)
                {
                    int iy = iy0 + kh;
                    if ((uint)iy >= (uint)g.H) continue;
                    for (int kw = 0; kw < g.KW; kw++)
                    {
                        int ix = ix0 + kw;
                        if ((uint)ix >= (uint)g.W) continue;
                        Axpy(image + ((long)iy * g.W + ix) * c, weight + (kh * g.KW + kw) * c, v, c);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Convolution weight gradient without im2col: for each entry at (n, oh, ow) of unit u,
    /// dW[u, kh, kw, :] += v·x[n, oh·S-P+kh, ow·S-P+kw, :] inside the image, and db[u] += v. x is
    /// channels-last [N, H, W, C] (small enough to stay in cache, unlike the im2col matrix) and dW is
    /// [U, KH, KW, C]; both are added into. Threads split the units.
    /// </summary>
    public static void ConvWeightGradient(SparseGradient g, ConvGeometry geometry, ReadOnlySpan<float> xNhwc, Span<float> dWHwc, Span<float> db, WorkerPool pool)
    {
        if (xNhwc.Length < geometry.N * geometry.C * geometry.H * geometry.W || dWHwc.Length < g.Units * geometry.PatchLength || db.Length < g.Units)
            throw new ArgumentException("sparse conv weight gradient: span too short");
        fixed (int* counts = g.Counts, positions = g.Positions)
        fixed (float* values = g.Values, px = xNhwc, pdw = dWHwc, pdb = db)
        {
            var job = new Job { Counts = counts, Positions = positions, Values = values, X = px, Dw = pdw, Db = pdb, Capacity = g.Capacity, Units = g.Units, Geometry = geometry };
            pool.Run(g.Units, &ConvWeightGradientUnit, &job);
        }
    }

    /// <summary>
    /// One unit's dW [KH, KW, C] row. Loop order keeps a 16-channel slice of dW in a register while all
    /// of the unit's entries stream past it, so each FMA costs one load instead of a load-modify-store.
    /// The entries' patch origins are decoded once into a stack buffer.
    /// </summary>
    private static void ConvWeightGradientUnit(void* args, int u)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var g = j.Geometry;
        int plane = g.OH * g.OW, c = g.C, start = u * j.Capacity, count = j.Counts[u];
        int* positions = j.Positions;
        float* values = j.Values + start, x = j.X;
        float* dw = j.Dw + (long)u * g.PatchLength;
        float biasSum = 0;
        for (int e = 0; e < count; e++) biasSum += values[e];
        j.Db[u] += biasSum;

        const int chunk = 512;
        int* originY = stackalloc int[chunk];
        int* originX = stackalloc int[chunk];
        long* imageOffset = stackalloc long[chunk];
        for (int e0 = 0; e0 < count; e0 += chunk)
        {
            int entries = Math.Min(chunk, count - e0);
            for (int e = 0; e < entries; e++)
            {
                int position = positions[start + e0 + e];
                int n = position / plane, p = position - n * plane;
                int oy = p / g.OW, ox = p - oy * g.OW;
                originY[e] = oy * g.Stride - g.Padding;
                originX[e] = ox * g.Stride - g.Padding;
                imageOffset[e] = (long)n * g.H * g.W * c;
            }
            float* v = values + e0;
            for (int kh = 0; kh < g.KH; kh++)
            for (int kw = 0; kw < g.KW; kw++)
            {
                float* target = dw + (kh * g.KW + kw) * c;
                int ch = 0;
                if (Vector512.IsHardwareAccelerated)
                {
                    // 32 channels at a time with two entries in flight: four independent FMA chains.
                    for (; ch + 32 <= c; ch += 32)
                    {
                        Vector512<float> a0 = Vector512.Load(target + ch), a1 = Vector512.Load(target + ch + 16);
                        Vector512<float> b0 = default, b1 = default;
                        int e = 0;
                        for (; e + 2 <= entries; e += 2)
                        {
                            int iy = originY[e] + kh, ix = originX[e] + kw;
                            if ((uint)iy < (uint)g.H && (uint)ix < (uint)g.W)
                            {
                                float* src = x + imageOffset[e] + ((long)iy * g.W + ix) * c + ch;
                                var w = Vector512.Create(v[e]);
                                a0 = Vector512.FusedMultiplyAdd(w, Vector512.Load(src), a0);
                                a1 = Vector512.FusedMultiplyAdd(w, Vector512.Load(src + 16), a1);
                            }
                            iy = originY[e + 1] + kh; ix = originX[e + 1] + kw;
                            if ((uint)iy < (uint)g.H && (uint)ix < (uint)g.W)
                            {
                                float* src = x + imageOffset[e + 1] + ((long)iy * g.W + ix) * c + ch;
                                var w = Vector512.Create(v[e + 1]);
                                b0 = Vector512.FusedMultiplyAdd(w, Vector512.Load(src), b0);
                                b1 = Vector512.FusedMultiplyAdd(w, Vector512.Load(src + 16), b1);
                            }
                        }
                        for (; e < entries; e++)
                        {
                            int iy = originY[e] + kh, ix = originX[e] + kw;
                            if ((uint)iy >= (uint)g.H || (uint)ix >= (uint)g.W) continue;
                            float* src = x + imageOffset[e] + ((long)iy * g.W + ix) * c + ch;
                            var w = Vector512.Create(v[e]);
                            a0 = Vector512.FusedMultiplyAdd(w, Vector512.Load(src), a0);
                            a1 = Vector512.FusedMultiplyAdd(w, Vector512.Load(src + 16), a1);
                        }
                        Vector512.Store(a0 + b0, target + ch);
                        Vector512.Store(a1 + b1, target + ch + 16);
                    }
                    for (; ch + 16 <= c; ch += 16)
                    {
                        var acc = Vector512.Load(target + ch);
                        for (int e = 0; e < entries; e++)
                        {
                            int iy = originY[e] + kh, ix = originX[e] + kw;
                            if ((uint)iy >= (uint)g.H || (uint)ix >= (uint)g.W) continue;
                            acc = Vector512.FusedMultiplyAdd(Vector512.Create(v[e]), Vector512.Load(x + imageOffset[e] + ((long)iy * g.W + ix) * c + ch), acc);
                        }
                        Vector512.Store(acc, target + ch);
                    }
                }
                for (; ch < c; ch++)
                {
                    float acc = target[ch];
                    for (int e = 0; e < entries; e++)
                    {
                        int iy = originY[e] + kh, ix = originX[e] + kw;
                        if ((uint)iy >= (uint)g.H || (uint)ix >= (uint)g.W) continue;
                        acc = MathF.FusedMultiplyAdd(v[e], x[imageOffset[e] + ((long)iy * g.W + ix) * c + ch], acc);
                    }
                    target[ch] = acc;
                }
            }
        }
    }

    /// <summary>First index in sorted[0..count) whose value is &gt;= target.</summary>
    private static int LowerBound(int* sorted, int count, int target)
    {
        int low = 0, high = count;
        while (low < high)
        {
            int mid = (low + high) >>> 1;
            if (sorted[mid] < target) low = mid + 1; else high = mid;
        }
        return low;
    }

    /// <summary>y[0..n) += a·x[0..n).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy(float* y, float* x, float a, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(a);
            for (; i + 16 <= n; i += 16) Vector512.Store(Vector512.FusedMultiplyAdd(va, Vector512.Load(x + i), Vector512.Load(y + i)), y + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a);
            for (; i + 8 <= n; i += 8) Vector256.Store(Vector256.FusedMultiplyAdd(va, Vector256.Load(x + i), Vector256.Load(y + i)), y + i);
        }
        for (; i < n; i++) y[i] = MathF.FusedMultiplyAdd(a, x[i], y[i]);
    }
}
