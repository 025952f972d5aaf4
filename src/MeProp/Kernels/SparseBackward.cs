using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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
        public float* Values, X, W, Dw, Db, Dx, Scratch;
        public int Capacity, K, Units;
        /// <summary>Tasks of <see cref="ConvGradients"/> before the images': the units, or none (<see cref="ConvInputGradient"/>).</summary>
        public int WeightTasks;
        public ConvGeometry Geometry;
    }

    /// <summary>
    /// dW[u, :] += Σ v·X[position, :] and db[u] += Σ v over u's entries. Threads take units as they free up.
    /// Columns of dW accumulate in registers over all of a unit's entries (two in flight).
    /// </summary>
    public static void WeightGradient(SparseGradient g, ReadOnlySpan<float> x, int k, Span<float> dW, Span<float> db, WorkerPool pool)
    {
        if (x.Length < (long)g.PositionCount * k || dW.Length < g.Units * k || db.Length < g.Units)
            throw new ArgumentException("sparse weight gradient: span too short");
        fixed (int* counts = g.Counts, positions = g.Positions)
        fixed (float* values = g.Values, px = x, pdw = dW, pdb = db)
        {
            var job = new Job { Counts = counts, Positions = positions, Values = values, X = px, Dw = pdw, Db = pdb, Capacity = g.Capacity, K = k, Units = g.Units };
            pool.RunDynamic(g.Units, &WeightGradientUnit, &job);
        }
    }

    private static void WeightGradientUnit(void* args, int u, int worker)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int start = u * j.Capacity, count = j.Counts[u], k = j.K;
        int* positions = j.Positions + start;
        float* values = j.Values + start, x = j.X;
        float* dwRow = j.Dw + (long)u * k;
        j.Db[u] += Sum(values, count);
        int col = 0;
        if (Vector512.IsHardwareAccelerated && k >= 16)
        {
            // 16 columns at a time stay in registers while the unit's rows stream past; a row tail
            // shorter than 16 is covered by one more pass over the row's last 16 columns, of which only
            // the lanes not yet done are added.
            for (; col < k; col += 16)
            {
                int c0 = Math.Min(col, k - 16);
                Vector512<float> a = default, b = default;
                int e = 0;
                for (; e + 2 <= count; e += 2)
                {
                    a = Vector512.FusedMultiplyAdd(Vector512.Create(values[e]), Vector512.Load(x + (long)positions[e] * k + c0), a);
                    b = Vector512.FusedMultiplyAdd(Vector512.Create(values[e + 1]), Vector512.Load(x + (long)positions[e + 1] * k + c0), b);
                }
                if (e < count) a = Vector512.FusedMultiplyAdd(Vector512.Create(values[e]), Vector512.Load(x + (long)positions[e] * k + c0), a);
                a += b;
                if (c0 == col) Vector512.Store(Vector512.Load(dwRow + col) + a, dwRow + col);
                else for (int lane = col - c0; lane < 16; lane++) dwRow[c0 + lane] += a[lane];
            }
            return;
        }
        for (int e = 0; e < count; e++) Axpy(dwRow, x + (long)positions[e] * k, values[e], k);
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
    /// Convolution gradients from the kept entries, without im2col, in one parallel run whose tasks are
    /// the units (weight gradient) and then the images (input gradient, skipped when
    /// <paramref name="dx"/> is empty). For an entry v at (n, oh, ow) of unit u:
    /// dW[u, :, kh, kw] += v·x[n, :, oh·S+kh-P, ow·S+kw-P], db[u] += v, and
    /// dx[n, :, oh·S+kh-P, ow·S+kw-P] += v·W[u, :, kh, kw].
    /// Inputs are channels-last so that a tap is a contiguous row of C values: x as a zero-bordered
    /// [N, H+2P, W+2P, C] batch (every tap lands inside it, so no bounds checks), the weight as
    /// [U, KH, KW, C]. dW [U, C, KH, KW] and db are added into; dx [N, C, H, W] is overwritten.
    /// A unit's tap sums stay in registers while its entries stream past. An image's dx is scattered
    /// into the worker's own zero-bordered image, <paramref name="dxScratch"/> (<see cref="ScratchLength"/>),
    /// small enough to stay in cache, then cropped into dx. Results do not depend on the thread count.
    /// </summary>
    public static void ConvGradients(SparseGradient g, ConvGeometry geometry, ReadOnlySpan<float> xPaddedNhwc,
        Span<float> dW, Span<float> db, ReadOnlySpan<float> weightHwc, Span<float> dx, Span<float> dxScratch, WorkerPool pool)
    {
        bool inputGradient = !dx.IsEmpty;
        if (xPaddedNhwc.Length < PaddedLength(geometry) || dW.Length < g.Units * geometry.PatchLength || db.Length < g.Units)
            throw new ArgumentException("sparse conv weight gradient: span too short");
        if (inputGradient && (weightHwc.Length < g.Units * geometry.PatchLength || dx.Length < geometry.N * geometry.C * geometry.H * geometry.W
                              || dxScratch.Length < ScratchLength(geometry, pool.ThreadCount)))
            throw new ArgumentException("sparse conv input gradient: span too short");
        fixed (int* counts = g.Counts, positions = g.Positions)
        fixed (float* values = g.Values, px = xPaddedNhwc, pdw = dW, pdb = db, pw = weightHwc, pdx = dx, scratch = dxScratch)
        {
            var job = new Job
            {
                Counts = counts, Positions = positions, Values = values, X = px, Dw = pdw, Db = pdb, W = pw, Dx = pdx,
                Scratch = scratch, Capacity = g.Capacity, Units = g.Units, WeightTasks = g.Units, Geometry = geometry,
            };
            pool.RunDynamic(g.Units + (inputGradient ? geometry.N : 0), &ConvGradientTask, &job);
        }
    }

    /// <summary>
    /// The input-gradient part of <see cref="ConvGradients"/> alone: dx [N, C, H, W] = the scatter of every
    /// entry's v·W[u, :, kh, kw] (weight [U, KH, KW, C]), overwritten, one task per image. A stride-1
    /// convolution's forward from a sparse input is this scatter too (see Conv2d's sparse-input forward).
    /// </summary>
    public static void ConvInputGradient(SparseGradient g, ConvGeometry geometry, ReadOnlySpan<float> weightHwc, Span<float> dx, Span<float> dxScratch, WorkerPool pool)
    {
        if (weightHwc.Length < g.Units * geometry.PatchLength || dx.Length < geometry.N * geometry.C * geometry.H * geometry.W
            || dxScratch.Length < ScratchLength(geometry, pool.ThreadCount))
            throw new ArgumentException("sparse conv input gradient: span too short");
        fixed (int* counts = g.Counts, positions = g.Positions)
        fixed (float* values = g.Values, pw = weightHwc, pdx = dx, scratch = dxScratch)
        {
            var job = new Job
            {
                Counts = counts, Positions = positions, Values = values, W = pw, Dx = pdx,
                Scratch = scratch, Capacity = g.Capacity, Units = g.Units, WeightTasks = 0, Geometry = geometry,
            };
            pool.RunDynamic(geometry.N, &ConvGradientTask, &job);
        }
    }

    /// <summary>
    /// Length of a zero-padded channels-last image batch [N, H+2P, W+2P, C], plus <see cref="ReadSlack"/>
    /// floats past it (their values never matter).
    /// </summary>
    public static int PaddedLength(ConvGeometry g) => checked(g.N * PaddedImageLength(g) + ReadSlack);

    /// <summary>
    /// A kernel row shorter than a vector (KW·C values, 5 for a first layer's 5x5 kernel) is read as a
    /// whole vector, whose lanes past the row are summed and dropped: at most this many floats past the
    /// row's end, so past the batch's last row too.
    /// </summary>
    public const int ReadSlack = 16;

    /// <summary>Scratch floats <see cref="ConvGradients"/> needs for the input gradient on a pool of <paramref name="workers"/>.</summary>
    public static int ScratchLength(ConvGeometry g, int workers) => workers * PaddedImageLength(g);

    private static int PaddedImageLength(ConvGeometry g) => (g.H + 2 * g.Padding) * (g.W + 2 * g.Padding) * g.C;

    private static void ConvGradientTask(void* args, int task, int worker)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        if (task < j.WeightTasks) ConvWeightGradientUnit(ref j, task);
        else ConvInputGradientImage(ref j, task - j.WeightTasks, worker);
    }

    /// <summary>
    /// Image n's input gradient: each of its entries scatters its whole patch (KH kernel rows of KW·C
    /// contiguous values, in the padded image as in the weight) in turn, units in order, then the border
    /// is cropped. A feature map keeps few non-zero entries in an image (one or two for a 64-channel
    /// 14 x 14 layer in synthetic training, ~90 an image in all), so the work per unit and per kernel row around them (a second
    /// binary search, decoding the positions sixteen at a time, a loop per 32 channels keeping the weight
    /// in registers) cost more than the multiply-adds: that layer's images took 11.7 us each on one thread
    /// (warm, 14 entries a map), this 9.6.
    /// </summary>
    private static void ConvInputGradientImage(ref Job j, int n, int worker)
    {
        var g = j.Geometry;
        int plane = g.OH * g.OW, c = g.C, paddedW = g.W + 2 * g.Padding, imageLength = PaddedImageLength(g), rowLength = g.KW * c;
        int rowStep = g.Stride * paddedW * c, columnStep = g.Stride * c;
        float* image = j.Scratch + (long)worker * imageLength;
        new Span<float>(image, imageLength).Clear();
        int first = n * plane, end = first + plane;
        // The image's dx (contiguous in NCHW, 25 KB for 32 channels of 14 x 14) is last written a step ago and comes from
        // L3: its lines are fetched a few per unit while the patches are scattered, so the crop's stores
        // find them in cache (that layer's image tasks in training: 82-98 -> 74-91 us a worker and step).
        float* dx = j.Dx + (long)n * c * g.H * g.W;
        int dxLength = c * g.H * g.W, dxStep = ((dxLength + j.Units - 1) / j.Units + 15) / 16 * 16;
        for (int u = 0; u < j.Units; u++)
        {
            if (Sse.IsSupported)
                for (int i = u * dxStep, iEnd = Math.Min(dxLength, i + dxStep); i < iEnd; i += 16) Sse.Prefetch0(dx + i);
            int* positions = j.Positions + u * j.Capacity;
            float* values = j.Values + u * j.Capacity;
            int count = j.Counts[u];
            float* weight = j.W + (long)u * g.PatchLength;
            for (int e = LowerBound(positions, count, first); e < count && positions[e] < end; e++)
            {
                int p = positions[e] - first, oy = p / g.OW, ox = p - oy * g.OW;
                ScatterPatch(image + oy * rowStep + ox * columnStep, paddedW * c, g.KH, weight, rowLength, values[e]);
            }
        }
        // Crop the border and turn channels-last into NCHW while the image is in cache, a row at a time.
        for (int y = 0; y < g.H; y++)
            ChannelLayout.RowsToPlanes(image + ((long)(y + g.Padding) * paddedW + g.Padding) * c, dx + y * g.W, g.H * g.W, c, g.W, null);
    }

    /// <summary>
    /// target[kh·rowStride + :rowLength] += v·w[kh·rowLength + :rowLength] for kh &lt; rows: one entry's
    /// patch. Eight vectors of the target are loaded before any of them is stored: with one vector
    /// loaded, added and stored at a time, 830 scattered 5x5x32 patches (one thread, warm, without the
    /// search and the crop) took 1.2-1.5 times as long (likely because the patches of neighbouring
    /// entries overlap, so loads wait on earlier stores to the same lines).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScatterPatch(float* target, nint rowStride, int rows, float* w, int rowLength, float v)
    {
        var scale = Vector512.Create(v);
        for (int kh = 0; kh < rows; kh++, target += rowStride, w += rowLength)
        {
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                for (; i + 128 <= rowLength; i += 128)
                {
                    float* t = target + i, source = w + i;
                    var t0 = Vector512.Load(t); var t1 = Vector512.Load(t + 16); var t2 = Vector512.Load(t + 32); var t3 = Vector512.Load(t + 48);
                    var t4 = Vector512.Load(t + 64); var t5 = Vector512.Load(t + 80); var t6 = Vector512.Load(t + 96); var t7 = Vector512.Load(t + 112);
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(source), t0), t);
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(source + 16), t1), t + 16);
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(source + 32), t2), t + 32);
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(source + 48), t3), t + 48);
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(source + 64), t4), t + 64);
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(source + 80), t5), t + 80);
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(source + 96), t6), t + 96);
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(source + 112), t7), t + 112);
                }
                for (; i + 32 <= rowLength; i += 32)
                {
                    var t0 = Vector512.Load(target + i); var t1 = Vector512.Load(target + i + 16);
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(w + i), t0), target + i);
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(w + i + 16), t1), target + i + 16);
                }
                for (; i + 16 <= rowLength; i += 16)
                    Vector512.Store(Vector512.FusedMultiplyAdd(scale, Vector512.Load(w + i), Vector512.Load(target + i)), target + i);
            }
            for (; i < rowLength; i++) target[i] = MathF.FusedMultiplyAdd(v, w[i], target[i]);
        }
    }

    /// <summary>Offsets (into a padded channels-last batch) of the top-left tap of each entry's patch.</summary>
    private static void DecodeOrigins(int* positions, int entries, ConvGeometry g, int* origin)
    {
        int plane = g.OH * g.OW, paddedW = g.W + 2 * g.Padding, imageLength = PaddedImageLength(g);
        int rowStep = g.Stride * paddedW * g.C, columnStep = g.Stride * g.C;
        int e = 0;
        if (Vector512.IsHardwareAccelerated && (long)g.N * plane <= FloatQuotient.MaxDividend)
        {
            // Sixteen at a time, the two divisions as float quotients: two integer divisions an entry
            // cost more than a first layer's whole gradient work for it (25 multiply-adds).
            var vPlane = Vector512.Create(plane);
            var vInversePlane = Vector512.Create(1f / plane);
            var vWidth = Vector512.Create(g.OW);
            var vInverseWidth = Vector512.Create(1f / g.OW);
            for (; e + 16 <= entries; e += 16)
            {
                var position = Vector512.Load(positions + e);
                var n = FloatQuotient.Divide(position, vPlane, vInversePlane);
                var p = position - n * vPlane;
                var oy = FloatQuotient.Divide(p, vWidth, vInverseWidth);
                var ox = p - oy * vWidth;
                Vector512.Store(n * imageLength + oy * rowStep + ox * columnStep, origin + e);
            }
        }
        for (; e < entries; e++)
        {
            int position = positions[e];
            int n = position / plane, p = position - n * plane;
            int oy = p / g.OW, ox = p - oy * g.OW;
            origin[e] = n * imageLength + oy * rowStep + ox * columnStep;
        }
    }

    // The stack buffers are written before they are read; zero-filling their 4 KB (a loop of pushes)
    // took a sixth of the samples in a unit of a 5x5 convolution from 32 channels.
    [SkipLocalsInit]
    private static void ConvWeightGradientUnit(ref Job j, int u)
    {
        var g = j.Geometry;
        int c = g.C, taps = g.KH * g.KW, start = u * j.Capacity, count = j.Counts[u], paddedW = g.W + 2 * g.Padding;
        float* values = j.Values + start;
        j.Db[u] += Sum(values, count);
        if (count == 0) return;
        const int chunk = 256;
        int* origin = stackalloc int[chunk];
        int rowLength = g.KW * c;
        float* tapSums = stackalloc float[taps * c + ReadSlack];
        float* dw = j.Dw + (long)u * g.PatchLength;
        for (int e0 = 0; e0 < count; e0 += chunk)
        {
            int entries = Math.Min(chunk, count - e0);
            DecodeOrigins(j.Positions + start + e0, entries, g, origin);
            // A kernel row's KW taps are KW·C contiguous values of the padded input: one gather of that
            // length, into the sums [KH, KW, C]; rows of a first layer (5 values) all in one pass.
            if (rowLength <= ShortRow && g.KH <= MaxShortRows && Vector256.IsHardwareAccelerated)
                GatherShortRows(j.X, paddedW * c, g.KH, origin, values + e0, entries, tapSums, rowLength);
            else
                for (int kh = 0; kh < g.KH; kh++)
                    GatherTap(j.X + (long)kh * paddedW * c, origin, values + e0, entries, tapSums + kh * rowLength, rowLength);
            // dW is [C, KH, KW] per unit: the sums are added in transposed, eight taps of a channel a
            // gather (a scalar add per value, a tap's channels KH·KW apart, took ~1 us of every unit of a
            // 5x5 convolution from 32 channels, however few its entries).
            ChannelLayout.RowsToPlanes(tapSums, dw, taps, c, taps, null, accumulate: true);
        }
    }

    /// <summary>Kernel rows of at most this many values (KW·C) are gathered a patch at a time, by <see cref="GatherShortRows"/>.</summary>
    private const int ShortRow = 8, MaxShortRows = 8;

    /// <summary>
    /// sums[kh·c + :c] = Σ_e v[e]·x[origin[e] + kh·rowStride + :c] for kh &lt; rows (at most
    /// <see cref="MaxShortRows"/>), c at most <see cref="ShortRow"/>: each row one 8-lane vector (up to
    /// <see cref="ReadSlack"/> values past it read, and the same past the sums written), all of a patch's
    /// rows a step, their sums in registers. Row by row (<see cref="GatherTap"/>), a first layer's 5-value
    /// rows were 16-lane loads that nearly always split a cache line, and the entry's offset and value
    /// were loaded again for each row: 392 entries of a 28 x 28 map took 1.8-3.5 us, this 0.7-1.3 us.
    /// Even and odd entries are summed apart and added at the end, as <see cref="GatherTap"/> does, so
    /// the sums are the same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GatherShortRows(float* x, int rowStride, int rows, int* origin, float* v, int entries, float* sums, int c)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default, b6 = default, b7 = default;
        nint stride = rowStride;
        int e = 0;
        for (; e + 2 <= entries; e += 2)
        {
            var even = Vector256.Create(v[e]);
            var odd = Vector256.Create(v[e + 1]);
            float* p = x + origin[e], q = x + origin[e + 1];
            AddRow(ref a0, ref b0, even, odd, p, q);
            if (rows > 1) AddRow(ref a1, ref b1, even, odd, p + stride, q + stride);
            if (rows > 2) AddRow(ref a2, ref b2, even, odd, p + 2 * stride, q + 2 * stride);
            if (rows > 3) AddRow(ref a3, ref b3, even, odd, p + 3 * stride, q + 3 * stride);
            if (rows > 4) AddRow(ref a4, ref b4, even, odd, p + 4 * stride, q + 4 * stride);
            if (rows > 5) AddRow(ref a5, ref b5, even, odd, p + 5 * stride, q + 5 * stride);
            if (rows > 6) AddRow(ref a6, ref b6, even, odd, p + 6 * stride, q + 6 * stride);
            if (rows > 7) AddRow(ref a7, ref b7, even, odd, p + 7 * stride, q + 7 * stride);
        }
        if (e < entries)
        {
            var last = Vector256.Create(v[e]);
            float* p = x + origin[e];
            a0 = Vector256.FusedMultiplyAdd(last, Vector256.Load(p), a0);
            if (rows > 1) a1 = Vector256.FusedMultiplyAdd(last, Vector256.Load(p + stride), a1);
            if (rows > 2) a2 = Vector256.FusedMultiplyAdd(last, Vector256.Load(p + 2 * stride), a2);
            if (rows > 3) a3 = Vector256.FusedMultiplyAdd(last, Vector256.Load(p + 3 * stride), a3);
            if (rows > 4) a4 = Vector256.FusedMultiplyAdd(last, Vector256.Load(p + 4 * stride), a4);
            if (rows > 5) a5 = Vector256.FusedMultiplyAdd(last, Vector256.Load(p + 5 * stride), a5);
            if (rows > 6) a6 = Vector256.FusedMultiplyAdd(last, Vector256.Load(p + 6 * stride), a6);
            if (rows > 7) a7 = Vector256.FusedMultiplyAdd(last, Vector256.Load(p + 7 * stride), a7);
        }
        // In row order: each store's lanes past its row are overwritten by the next row's.
        Vector256.Store(a0 + b0, sums);
        if (rows > 1) Vector256.Store(a1 + b1, sums + c);
        if (rows > 2) Vector256.Store(a2 + b2, sums + 2 * c);
        if (rows > 3) Vector256.Store(a3 + b3, sums + 3 * c);
        if (rows > 4) Vector256.Store(a4 + b4, sums + 4 * c);
        if (rows > 5) Vector256.Store(a5 + b5, sums + 5 * c);
        if (rows > 6) Vector256.Store(a6 + b6, sums + 6 * c);
        if (rows > 7) Vector256.Store(a7 + b7, sums + 7 * c);
    }

    /// <summary>One kernel row of an even and an odd entry into their sums (inlined: the sums stay in registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRow(ref Vector256<float> sumEven, ref Vector256<float> sumOdd, Vector256<float> even, Vector256<float> odd, float* p, float* q)
    {
        sumEven = Vector256.FusedMultiplyAdd(even, Vector256.Load(p), sumEven);
        sumOdd = Vector256.FusedMultiplyAdd(odd, Vector256.Load(q), sumOdd);
    }

    /// <summary>
    /// sums[:c] = Σ_e v[e]·x[origin[e] + :c]; the sums stay in registers, two entries in flight. With 512-bit
    /// vectors up to <see cref="ReadSlack"/> values past each row are read and up to that many sums past c written.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GatherTap(float* x, int* origin, float* v, int entries, float* sums, int c)
    {
        int ch = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; ch + 32 <= c; ch += 32)
            {
                Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
                int e = 0;
                for (; e + 2 <= entries; e += 2)
                {
                    float* s0 = x + origin[e] + ch, s1 = x + origin[e + 1] + ch;
                    var v0 = Vector512.Create(v[e]);
                    var v1 = Vector512.Create(v[e + 1]);
                    a0 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(s0), a0);
                    a1 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(s0 + 16), a1);
                    b0 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(s1), b0);
                    b1 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(s1 + 16), b1);
                }
                if (e < entries)
                {
                    float* s0 = x + origin[e] + ch;
                    var v0 = Vector512.Create(v[e]);
                    a0 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(s0), a0);
                    a1 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(s0 + 16), a1);
                }
                Vector512.Store(a0 + b0, sums + ch);
                Vector512.Store(a1 + b1, sums + ch + 16);
            }
            // The last values (all of a short row) as whole vectors: the lanes past the row sum
            // neighbouring values into sums past c, which the caller overwrites or ignores.
            for (; ch < c; ch += 16)
            {
                Vector512<float> a0 = default, b0 = default;
                int e = 0;
                for (; e + 2 <= entries; e += 2)
                {
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Create(v[e]), Vector512.Load(x + origin[e] + ch), a0);
                    b0 = Vector512.FusedMultiplyAdd(Vector512.Create(v[e + 1]), Vector512.Load(x + origin[e + 1] + ch), b0);
                }
                if (e < entries) a0 = Vector512.FusedMultiplyAdd(Vector512.Create(v[e]), Vector512.Load(x + origin[e] + ch), a0);
                Vector512.Store(a0 + b0, sums + ch);
            }
        }
        for (; ch < c; ch++)
        {
            float acc = 0;
            for (int e = 0; e < entries; e++) acc = MathF.FusedMultiplyAdd(v[e], x[origin[e] + ch], acc);
            sums[ch] = acc;
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

    /// <summary>
    /// Σ values[0..count), sixteen lanes at a time: a plain running sum is a chain of dependent adds, 4
    /// cycles a value (1.5 us for 392, 5% of a 28 x 28 map over a batch of 10). The order of the additions depends only on
    /// count, so the sum is the same wherever the values lie.
    /// </summary>
    private static float Sum(float* values, int count)
    {
        int e = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && count >= 16)
        {
            var lanes = Vector512<float>.Zero;
            for (; e + 16 <= count; e += 16) lanes += Vector512.Load(values + e);
            sum = Vector512.Sum(lanes);
        }
        for (; e < count; e++) sum += values[e];
        return sum;
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

/// <summary>
/// Twin of <see cref="SparseBackward"/>: each kept entry's terms added one by one as plain loops, float64
/// sums, the same layouts and the same add-into or overwrite contract as the kernel.
/// </summary>
internal static class SparseBackwardReference
{
    /// <summary>dW[u, :] += Σ v·X[position, :] and db[u] += Σ v over u's entries (X [P, K]).</summary>
    public static void WeightGradient(SparseGradient g, ReadOnlySpan<float> x, int k, Span<float> dW, Span<float> db)
    {
        for (int u = 0; u < g.Units; u++)
        {
            double bias = db[u];
            var row = new double[k];
            for (int c = 0; c < k; c++) row[c] = dW[u * k + c];
            for (int e = 0; e < g.Counts[u]; e++)
            {
                int position = g.Positions[u * g.Capacity + e];
                double v = g.Values[u * g.Capacity + e];
                bias += v;
                for (int c = 0; c < k; c++) row[c] += v * x[position * k + c];
            }
            db[u] = (float)bias;
            for (int c = 0; c < k; c++) dW[u * k + c] = (float)row[c];
        }
    }

    /// <summary>dX[position, :] += v·W[u, :] for every entry (W [U, K], dX [P, K]).</summary>
    public static void RowInputGradient(SparseGradient g, ReadOnlySpan<float> w, int k, Span<float> dx)
    {
        var sum = new double[g.PositionCount * k];
        for (int i = 0; i < sum.Length; i++) sum[i] = dx[i];
        for (int u = 0; u < g.Units; u++)
            for (int e = 0; e < g.Counts[u]; e++)
            {
                int position = g.Positions[u * g.Capacity + e];
                double v = g.Values[u * g.Capacity + e];
                for (int c = 0; c < k; c++) sum[position * k + c] += v * w[u * k + c];
            }
        for (int i = 0; i < sum.Length; i++) dx[i] = (float)sum[i];
    }

    /// <summary>
    /// For an entry v at (n, oh, ow) of unit u and every tap (kh, kw):
    /// dW[u, :, kh, kw] += v·x[n, oh·S+kh, ow·S+kw, :] (x zero-bordered [N, H+2P, W+2P, C]), db[u] += v, and,
    /// unless <paramref name="dx"/> is empty, dx[n, :, oh·S+kh-P, ow·S+kw-P] += v·W[u, kh, kw, :] for taps
    /// inside the image (weight [U, KH, KW, C]). dW [U, C, KH, KW] and db are added into; dx [N, C, H, W] is overwritten.
    /// </summary>
    public static void ConvGradients(SparseGradient g, ConvGeometry geometry, ReadOnlySpan<float> xPaddedNhwc,
        Span<float> dW, Span<float> db, ReadOnlySpan<float> weightHwc, Span<float> dx)
    {
        var (c, kh, kw) = (geometry.C, geometry.KH, geometry.KW);
        int plane = geometry.OH * geometry.OW, paddedH = geometry.H + 2 * geometry.Padding, paddedW = geometry.W + 2 * geometry.Padding;
        var dwSum = new double[g.Units * geometry.PatchLength];
        for (int i = 0; i < dwSum.Length; i++) dwSum[i] = dW[i];
        var dxSum = new double[geometry.N * c * geometry.H * geometry.W];
        for (int u = 0; u < g.Units; u++)
        {
            double bias = db[u];
            for (int e = 0; e < g.Counts[u]; e++)
            {
                int position = g.Positions[u * g.Capacity + e];
                double v = g.Values[u * g.Capacity + e];
                int n = position / plane, oy = position % plane / geometry.OW, ox = position % geometry.OW;
                bias += v;
                for (int ky = 0; ky < kh; ky++)
                    for (int kx = 0; kx < kw; kx++)
                    {
                        int py = oy * geometry.Stride + ky, px = ox * geometry.Stride + kx;
                        int iy = py - geometry.Padding, ix = px - geometry.Padding;
                        bool inside = iy >= 0 && iy < geometry.H && ix >= 0 && ix < geometry.W;
                        for (int ch = 0; ch < c; ch++)
                        {
                            dwSum[((u * c + ch) * kh + ky) * kw + kx] += v * xPaddedNhwc[((n * paddedH + py) * paddedW + px) * c + ch];
                            if (inside && !dx.IsEmpty)
                                dxSum[((n * c + ch) * geometry.H + iy) * geometry.W + ix] += v * weightHwc[((u * kh + ky) * kw + kx) * c + ch];
                        }
                    }
            }
            db[u] = (float)bias;
        }
        for (int i = 0; i < dwSum.Length; i++) dW[i] = (float)dwSum[i];
        if (!dx.IsEmpty)
            for (int i = 0; i < dxSum.Length; i++) dx[i] = (float)dxSum[i];
    }
}
