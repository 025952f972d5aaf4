using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Kernels;

/// <summary>
/// Single-precision matrix product C[m,n] = op(A)[m,k] · op(B)[k,n], or C += that product.
/// Legend: row-major storage; op(X) is X or its transpose; lda/ldb/ldc are row strides of the stored
/// matrices; MR x NR is the register tile, KC the depth of a block, MC the rows of a task.
/// An FMA micro-kernel computes MR x NR tiles of C in registers, reading A in place (a row of op(A) is
/// a row of A or, transposed, a column whose MR neighbours are contiguous: both stream well) and B from
/// NR-wide panels packed once per call (shared, read-only). When m is small B is used too few times
/// to pay for packing: the kernel then reads B's rows in place (not transposed), or, when B is
/// transposed, each C[i, j] is a dot product of two contiguous rows. Tasks own disjoint tiles of C
/// and every element sums over k in the same order, so the result does not depend on the thread
/// count. Owns its packing buffers; one instance must not be used from two threads at once.
/// </summary>
public sealed unsafe class Gemm
{
    /// <summary>Rows of the register tile: 8 with 512-bit vectors, 6 with 256-bit ones (fits 16 registers).</summary>
    internal static readonly int MR = Vector512.IsHardwareAccelerated ? 8 : 6;
    /// <summary>Columns of the register tile: two vectors.</summary>
    internal static readonly int NR = Vector512.IsHardwareAccelerated ? 32 : 16;
    internal const int KC = 256;
    private const int MC = 96; // a multiple of both MR values
    /// <summary>Up to this many rows of C, B is read in place instead of packed.</summary>
    internal const int SmallM = 64;
    /// <summary>Up to this many rows of C, a transposed B is multiplied as row-by-row dot products.</summary>
    internal const int DotM = 16;
    /// <summary>
    /// Most depth one pass of the dot-product path takes: ten rows of A that deep (31 KiB) and two weight
    /// rows stay in a 48 KiB L1. The depth is cut into equal chunks (a depth of 3136 into 4 x 784, not 4 x 768
    /// plus a 64-deep pass that costs as many lane reductions as a full one).
    /// </summary>
    private const int DotDepthChunk = 800;
    /// <summary>Rows of op(A) one pass of the dot-product path takes: 2 x DotRows sums fit the registers.</summary>
    private static readonly int DotRows = Vector512.IsHardwareAccelerated ? 10 : 4;

    /// <summary>
    /// Up to this many rows of C (above the small-m paths) and at least four times as many columns,
    /// Cᵀ = op(B)ᵀ · op(A)ᵀ is computed instead (see <see cref="Multiply"/>).
    /// </summary>
    internal const int SwapM = 128;

    /// <summary>
    /// From this many column panels per task, A is packed too: each block of MC rows by KC depth is
    /// copied once into MR-row slivers that the micro-kernel reads contiguously, instead of MR rows lda
    /// apart (on 2048^3 that touched a new page per row and per pass).
    /// </summary>
    private const int PackAPanels = 8;

    /// <summary>
    /// A block of B (KC rows of n, packed or read in place) larger than this does not stay in L2 between
    /// its uses, so each panel comes from L3 and the next one is prefetched while the current one is in use.
    /// </summary>
    private const long PrefetchPanelsAbove = 512 * 1024;

    /// <summary>Fewest depth values per split when the depth is cut to make enough tasks.</summary>
    private const int SplitDepth = 4 * KC;
    private const int MaxSplits = 8;

    private readonly WorkerPool _pool;
    // What the micro-kernel streams is 64-byte aligned, so a packed panel row (32 floats) is two whole
    // cache lines, never three (in-process A/B: the products of a 5x5
    // convolution from 32 to 64 channels at 14 x 14 +7-10%, 2048^3 +3-20%; same bits).
    private readonly AlignedBuffer _packedB = new();
    private readonly AlignedBuffer _packedA = new();
    private readonly AlignedBuffer _edgePanels = new();
    private float[] _partials = [];
    private float[] _transposedC = [];

    public Gemm(WorkerPool pool)
    {
        _pool = pool;
    }

    private struct Job
    {
        public float* A, B, C, PackedB, EdgePanels, PackedA;
        public int M, N, K, Lda, Ldb, Ldc;
        public bool TransA, TransB, Accumulate, DirectB;
        public int PaddedN, ColumnSplits, PanelsPerSplit, Workers, ColumnsPerTask;
        public int Tiles, DepthPerSplit, Splits;
        public float* Partials;
    }

    /// <summary>
    /// C = op(A)·op(B) (accumulate false) or C += op(A)·op(B) (accumulate true).
    /// A is m x k stored as m rows (or k rows when transA), likewise B.
    /// </summary>
    public void Multiply(bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate)
    {
        GemmChecks.Validate(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            if (!accumulate) for (int i = 0; i < m; i++) c.Slice(i * ldc, n).Clear();
            return;
        }
        if (!accumulate && m > Math.Max(DotM, transB ? 0 : SmallM) && m <= SwapM && n >= 4 * m)
        {
            MultiplySwapped(transA, transB, m, n, k, a, lda, b, ldb, c, ldc);
            return;
        }
        int nr = NR;
        int panels = (n + nr - 1) / nr;
        int paddedN = panels * nr;
        bool dots = transB && m <= DotM;
        bool directB = !transB && m <= SmallM;
        var packedB = _packedB.Span(dots || directB ? 0 : checked(paddedN * k));

        int rowBlocks = (m + MC - 1) / MC;
        int wanted = 2 * _pool.ThreadCount;
        int columnSplits = rowBlocks >= wanted ? 1 : Math.Min(panels, (wanted + rowBlocks - 1) / rowBlocks);
        int panelsPerSplit = (panels + columnSplits - 1) / columnSplits;
        columnSplits = (panels + panelsPerSplit - 1) / panelsPerSplit;

        // A small C with a long depth (a conv layer's dW: OC x K over every position of the batch) makes
        // too few tiles to keep the threads busy: cut the depth into a fixed number of splits, each adding
        // up its own partial C, then sum the partials in split order. Whether and how to split depends only
        // on the shape, so results do not depend on the thread count.
        int tiles = rowBlocks * columnSplits;
        int splits = directB && rowBlocks * panels < 4 && k >= 2 * SplitDepth ? Math.Min(MaxSplits, k / SplitDepth) : 1;
        int depthPerSplit = (k + splits - 1) / splits;
        if (splits > 1 && _partials.Length < (long)splits * m * n) _partials = GC.AllocateUninitializedArray<float>(splits * m * n, pinned: true);

        fixed (float* pa = a, pb = b, pc = c, ppb = packedB, edge = _edgePanels.Span(_pool.ThreadCount * KC * 32), partials = _partials, ppa = _packedA.Span(_pool.ThreadCount * MC * KC))
        {
            var job = new Job
            {
                A = pa, B = pb, C = pc, PackedB = ppb, EdgePanels = edge, PackedA = ppa, M = m, N = n, K = k, Lda = lda, Ldb = ldb, Ldc = ldc,
                TransA = transA, TransB = transB, Accumulate = accumulate, DirectB = directB, PaddedN = paddedN,
                ColumnSplits = columnSplits, PanelsPerSplit = panelsPerSplit, Workers = _pool.ThreadCount,
            };
            if (dots)
            {
                // Enough column chunks to balance the threads; each chunk streams its rows of B once. An even
                // number of columns each: columns are summed in pairs, depth chunk by depth chunk, and a task's odd
                // last column in one pass, so odd chunks would make a column's sum depend on the thread count.
                job.ColumnsPerTask = (Math.Max(16, (n + 4 * _pool.ThreadCount - 1) / (4 * _pool.ThreadCount)) + 1) & ~1;
                _pool.RunDynamic((n + job.ColumnsPerTask - 1) / job.ColumnsPerTask, &DotTask, &job);
                return;
            }
            if (splits > 1)
            {
                job.Tiles = tiles;
                job.Splits = splits;
                job.DepthPerSplit = depthPerSplit;
                job.Partials = partials;
                _pool.Run(splits * tiles, &SplitDepthTask, &job);
                _pool.Run(m, &SumPartialsRow, &job);
                return;
            }
            if (!directB) _pool.Run(panels, &PackBTask, &job);
            _pool.RunDynamic(tiles, &TileTask, &job);
        }
    }

    /// <summary>
    /// A few dozen rows of C against a wide B (a linear layer's forward or dX at batch ~17-128, B the
    /// weight): packing B would copy the whole weight every call. Cᵀ = op(B)ᵀ · op(A)ᵀ reads the weight
    /// in place as the A side and packs only op(A); Cᵀ is then transposed into C. Each element is the
    /// same chain of FMAs (a·b = b·a), so the result is the same bits as the unswapped product.
    /// </summary>
    private void MultiplySwapped(bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc)
    {
        if (_transposedC.Length < (long)n * m) _transposedC = GC.AllocateUninitializedArray<float>(n * m, pinned: true);
        var transposed = _transposedC.AsSpan(0, n * m);
        Multiply(!transB, !transA, n, m, k, b, ldb, a, lda, transposed, m, false);
        fixed (float* pt = transposed, pc = c)
        {
            var job = new Job { C = pc, Ldc = ldc, Partials = pt, M = m, N = n };
            _pool.Run(m, &TransposeRow, &job);
        }
    }

    /// <summary>Row i of C = column i of Cᵀ [n, m] (held in Partials).</summary>
    private static void TransposeRow(void* args, int row)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        float* target = j.C + (long)row * j.Ldc, source = j.Partials + row;
        for (int col = 0; col < j.N; col++) target[col] = source[(long)col * j.M];
    }

    /// <summary>One tile of one depth split, written (not added) into that split's partial C [m, n].</summary>
    private static void SplitDepthTask(void* args, int task)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int split = task / j.Tiles, tile = task % j.Tiles;
        int p0 = split * j.DepthPerSplit;
        var sub = j;
        sub.K = Math.Min(j.DepthPerSplit, j.K - p0);
        sub.A = j.A + (j.TransA ? (long)p0 * j.Lda : p0);
        sub.B = j.B + (long)p0 * j.Ldb;
        sub.C = j.Partials + (long)split * j.M * j.N;
        sub.Ldc = j.N;
        sub.Accumulate = false;
        if (sub.K > 0) Tile(ref sub, tile, task % j.Workers);
        else for (int i = 0; i < j.M; i++) new Span<float>(sub.C + (long)i * j.N, j.N).Clear();
    }

    /// <summary>Row i of C (+)= the sum of the splits' partial rows, in split order.</summary>
    private static void SumPartialsRow(void* args, int row)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var target = new Span<float>(j.C + (long)row * j.Ldc, j.N);
        var first = new ReadOnlySpan<float>(j.Partials + (long)row * j.N, j.N);
        if (j.Accumulate) System.Numerics.Tensors.TensorPrimitives.Add(target, first, target);
        else first.CopyTo(target);
        for (int split = 1; split < j.Splits; split++)
            System.Numerics.Tensors.TensorPrimitives.Add(target, new ReadOnlySpan<float>(j.Partials + ((long)split * j.M + row) * j.N, j.N), target);
    }

    /// <summary>Packs NR-wide column panel <paramref name="panel"/> of op(B) for every KC block, zero-padded.</summary>
    private static void PackBTask(void* args, int panel)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int nr = NR;
        int j0 = panel * nr;
        int width = Math.Min(nr, j.N - j0);
        for (int p0 = 0; p0 < j.K; p0 += KC)
        {
            int kc = Math.Min(KC, j.K - p0);
            float* dst = j.PackedB + (long)p0 * j.PaddedN + (long)panel * kc * nr;
            for (int kk = 0; kk < kc; kk++)
            {
                float* row = dst + kk * nr;
                int kIndex = p0 + kk;
                if (!j.TransB)
                {
                    float* src = j.B + (long)kIndex * j.Ldb + j0;
                    if (width == nr)
                    {
                        // A whole panel row: NR contiguous values, two vectors (2048^3's B, 2 threads:
                        // 3.7 -> 1.1 ms, value by value before).
                        if (nr == 32)
                        {
                            Vector512.Store(Vector512.Load(src), row);
                            Vector512.Store(Vector512.Load(src + 16), row + 16);
                        }
                        else
                        {
                            Vector256.Store(Vector256.Load(src), row);
                            Vector256.Store(Vector256.Load(src + 8), row + 8);
                        }
                        continue;
                    }
                    for (int jj = 0; jj < width; jj++) row[jj] = src[jj];
                }
                else
                {
                    float* src = j.B + (long)j0 * j.Ldb + kIndex;
                    for (int jj = 0; jj < width; jj++) row[jj] = src[(long)jj * j.Ldb];
                }
                for (int jj = width; jj < nr; jj++) row[jj] = 0;
            }
        }
    }

    /// <summary>
    /// Computes one task's tile of C: MC rows by a run of column panels, over all of k. Tiles go to
    /// whichever worker is free: on this VM one core often runs slower for a while, and a fixed share
    /// then waited for it (2048^3 medians, 2 threads, in-process A/B: 145-163 -> 188-213 GFLOP/s).
    /// </summary>
    private static void TileTask(void* args, int task, int worker)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        Tile(ref j, task, worker);
    }

    private static void Tile(ref Job j, int task, int worker)
    {
        int mr = MR, nr = NR;
        int rowBlock = task / j.ColumnSplits;
        int split = task % j.ColumnSplits;
        int i0 = rowBlock * MC;
        int rows = Math.Min(MC, j.M - i0);
        int panel0 = split * j.PanelsPerSplit;
        int panelEnd = Math.Min(panel0 + j.PanelsPerSplit, (j.N + nr - 1) / nr);
        // op(A)[i, p] = A[i*rowStride + p*depthStride]
        nint rowStride = j.TransA ? 1 : j.Lda, depthStride = j.TransA ? j.Lda : 1;
        float* edgePanel = j.EdgePanels + worker * KC * 32;
        float* edge = stackalloc float[8 * 32];
        bool packA = !j.DirectB && j.PackedA != null && panelEnd - panel0 >= PackAPanels;
        long blockBytes = (long)Math.Min(KC, j.K) * (j.DirectB ? j.N : j.PaddedN) * sizeof(float);
        bool prefetchPanels = Sse.IsSupported && blockBytes > PrefetchPanelsAbove;
        float* aBlock = j.PackedA + (long)worker * MC * KC;
        for (int p0 = 0; p0 < j.K; p0 += KC)
        {
            int kc = Math.Min(KC, j.K - p0);
            bool accumulate = j.Accumulate || p0 > 0;
            if (packA) PackA(j.A + i0 * rowStride + p0 * depthStride, rowStride, depthStride, rows, kc, aBlock);
            for (int panel = panel0; panel < panelEnd; panel++)
            {
                int c0 = panel * nr;
                int cols = Math.Min(nr, j.N - c0);
                float* bPanel;
                nint bStride;
                if (!j.DirectB)
                {
                    bPanel = j.PackedB + (long)p0 * j.PaddedN + (long)panel * kc * nr;
                    bStride = nr;
                }
                else if (cols == nr)
                {
                    bPanel = j.B + (long)p0 * j.Ldb + c0;
                    bStride = j.Ldb;
                }
                else
                {
                    // The last, partial panel of an in-place B is copied, zero-padded, so no load runs past a row.
                    for (int kk = 0; kk < kc; kk++)
                    {
                        float* src = j.B + (long)(p0 + kk) * j.Ldb + c0;
                        float* dst = edgePanel + kk * nr;
                        for (int q = 0; q < cols; q++) dst[q] = src[q];
                        for (int q = cols; q < nr; q++) dst[q] = 0;
                    }
                    bPanel = edgePanel;
                    bStride = nr;
                }
                // The next panel's rows (NR values each) into L2, a slice of them per sliver, spread over
                // that sliver's depth steps by the micro-kernel; after the last panel of a block, the next
                // block's first panel. Without it the first sliver of every panel waited on L3 (2048^3:
                // +10-20% when it came in; B read in place, rows ldb apart: see PERFORMANCE.md).
                float* nextPanel = null;
                int nextRows = 0;
                nint nextStride = j.DirectB ? j.Ldb : nr;
                if (prefetchPanels)
                {
                    int nextKc = Math.Min(KC, j.K - p0 - KC);
                    if (panel + 1 < panelEnd)
                    {
                        nextPanel = j.DirectB ? j.B + (long)p0 * j.Ldb + c0 + nr : bPanel + kc * nr;
                        nextRows = kc;
                    }
                    else if (nextKc > 0)
                    {
                        nextPanel = j.DirectB
                            ? j.B + (long)(p0 + KC) * j.Ldb + panel0 * nr
                            : j.PackedB + (long)(p0 + KC) * j.PaddedN + (long)panel0 * nextKc * nr;
                        nextRows = nextKc;
                    }
                }
                int slivers = (rows + mr - 1) / mr;
                int rowsPerSliver = (nextRows + slivers - 1) / slivers;
                for (int ir = 0; ir < rows; ir += mr)
                {
                    int tileRows = Math.Min(mr, rows - ir);
                    int r0 = Math.Min(nextRows, ir / mr * rowsPerSliver), r1 = Math.Min(nextRows, r0 + rowsPerSliver);
                    var prefetch = new PanelRows(nextPanel + r0 * nextStride, r1 - r0, nextStride);
                    // A packed sliver holds MR values per depth step, its rows next to each other.
                    float* aSliver = packA ? aBlock + (long)ir * kc : j.A + (i0 + ir) * rowStride + p0 * depthStride;
                    nint aRowStride = packA ? 1 : rowStride, aDepthStride = packA ? mr : depthStride;
                    float* cTile = j.C + (long)(i0 + ir) * j.Ldc + c0;
                    if (tileRows == mr && cols == nr)
                    {
                        MicroKernel(kc, aSliver, aRowStride, aDepthStride, tileRows, bPanel, bStride, cTile, j.Ldc, accumulate, prefetch);
                    }
                    else
                    {
                        // Edge tile: compute a full tile into scratch, then copy the valid part.
                        MicroKernel(kc, aSliver, aRowStride, aDepthStride, tileRows, bPanel, bStride, edge, nr, false, prefetch);
                        for (int r = 0; r < tileRows; r++)
                        {
                            float* cRow = cTile + (long)r * j.Ldc;
                            float* eRow = edge + r * nr;
                            if (accumulate) for (int q = 0; q < cols; q++) cRow[q] += eRow[q];
                            else for (int q = 0; q < cols; q++) cRow[q] = eRow[q];
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// Copies op(A)'s block of <paramref name="rows"/> x <paramref name="kc"/> (row r, depth p at
    /// a[r·rowStride + p·depthStride]) into slivers of MR rows: sliver s holds depth step p's MR values
    /// at packed[s·MR·kc + p·MR]. A short last sliver fills only its rows (the micro-kernel reads no others).
    /// </summary>
    private static void PackA(float* a, nint rowStride, nint depthStride, int rows, int kc, float* packed)
    {
        int mr = MR;
        for (int ir = 0; ir < rows; ir += mr)
        {
            int tileRows = Math.Min(mr, rows - ir);
            float* sliver = packed + (long)ir * kc;
            if (tileRows == 8 && depthStride == 1 && Avx.IsSupported)
            {
                PackSliver8(a + ir * rowStride, rowStride, kc, sliver);
                continue;
            }
            for (int r = 0; r < tileRows; r++)
            {
                float* source = a + (ir + r) * rowStride;
                float* target = sliver + r;
                for (int p = 0; p < kc; p++) target[p * mr] = source[p * depthStride];
            }
        }
    }

    /// <summary>
    /// Eight rows of A (depth contiguous, rows rowStride apart) into a sliver: packed[p·8 + r] = a[r·rowStride + p].
    /// Eight depth steps at a time as an 8 x 8 transpose in registers; the depth's tail scalar. With B's
    /// vector copy, 2048^3 ran 5-12% faster (medians and bests, in-process A/B, 2 threads); same bits.
    /// </summary>
    private static void PackSliver8(float* a, nint rowStride, int kc, float* packed)
    {
        int p = 0;
        for (; p + 8 <= kc; p += 8, packed += 64)
        {
            ChannelLayout.Transpose8x8(a + p, rowStride, out var t0, out var t1, out var t2, out var t3, out var t4, out var t5, out var t6, out var t7);
            Vector256.Store(t0, packed);
            Vector256.Store(t1, packed + 8);
            Vector256.Store(t2, packed + 16);
            Vector256.Store(t3, packed + 24);
            Vector256.Store(t4, packed + 32);
            Vector256.Store(t5, packed + 40);
            Vector256.Store(t6, packed + 48);
            Vector256.Store(t7, packed + 56);
        }
        for (; p < kc; p++, packed += 8)
            for (int r = 0; r < 8; r++) packed[r] = a[r * rowStride + p];
    }

    /// <summary>
    /// Small m with B transposed: C[i, j] (+)= Σ_p op(A)[i, p]·B[j, p], a task owning a run of columns j
    /// (a linear layer's forward at small batch: B is the weight, each column of C a dot product with
    /// one weight row). Depth is cut into chunks whose rows of A stay in L1; in each, two weight rows at
    /// a time meet ten rows of A (four with 256-bit vectors), twenty sums in registers: each piece of a
    /// weight row is read from memory once, and per loaded weight vector ten FMAs instead of four
    /// (a 3136 x 1024 linear layer's forward at batch 10: 1.67 -> 1.21 ms with one thread on the Xeon VM,
    /// interleaved timing).
    /// </summary>
    private static void DotTask(void* args, int task, int worker)
    {
        ref Job job = ref Unsafe.AsRef<Job>(args);
        int j0 = task * job.ColumnsPerTask, j1 = Math.Min(job.N, j0 + job.ColumnsPerTask);
        nint rowStride = job.TransA ? 1 : job.Lda, depthStride = job.TransA ? job.Lda : 1;
        int col = j0;
        float* sums = stackalloc float[2 * DotRows];
        float* sums2 = sums + DotRows;
        if (depthStride == 1)
        {
            int pairsEnd = j0 + (j1 - j0) / 2 * 2;
            int chunks = (job.K + DotDepthChunk - 1) / DotDepthChunk;
            int chunk = ((job.K + chunks - 1) / chunks + 15) / 16 * 16;
            for (int p0 = 0; p0 < job.K; p0 += chunk)
            {
                int kc = Math.Min(chunk, job.K - p0);
                bool accumulate = job.Accumulate || p0 > 0;
                for (col = j0; col < pairsEnd; col += 2)
                {
                    float* b0 = job.B + (long)col * job.Ldb + p0, b1 = b0 + job.Ldb;
                    for (int i = 0; i < job.M; i += DotRows)
                    {
                        int rows = Math.Min(DotRows, job.M - i);
                        if (Vector512.IsHardwareAccelerated) Dot10x2(job.A + i * rowStride + p0, rowStride, rows, b0, b1, 4 * (nint)job.Ldb, kc, sums);
                        else Dot4x2(job.A + i * rowStride + p0, rowStride, rows, b0, b1, kc, sums);
                        for (int r = 0; r < rows; r++)
                        {
                            float* target = job.C + (long)(i + r) * job.Ldc + col;
                            target[0] = accumulate ? target[0] + sums[r] : sums[r];
                            target[1] = accumulate ? target[1] + sums2[r] : sums2[r];
                        }
                    }
                }
            }
            col = pairsEnd;
        }
        for (; col < j1; col++)
        {
            float* bRow = job.B + (long)col * job.Ldb;
            for (int i = 0; i < job.M; i += 4)
            {
                int rows = Math.Min(4, job.M - i);
                float* a0 = job.A + i * rowStride;
                float s0, s1, s2, s3;
                if (depthStride == 1) Dot4(a0, rowStride, rows, bRow, job.K, out s0, out s1, out s2, out s3);
                else Dot4Strided(a0, rowStride, depthStride, rows, bRow, job.K, out s0, out s1, out s2, out s3);
                (sums[0], sums[1], sums[2], sums[3]) = (s0, s1, s2, s3);
                for (int r = 0; r < rows; r++)
                {
                    float* target = job.C + (long)(i + r) * job.Ldc + col;
                    *target = job.Accumulate ? *target + sums[r] : sums[r];
                }
            }
        }
    }

    /// <summary>
    /// sums[r] = a_r · b0 and sums[4 + r] = a_r · b1 for up to four contiguous rows a_r = a + r·rowStride,
    /// over k values.
    /// </summary>
    private static void Dot4x2(float* a, nint rowStride, int rows, float* b0, float* b1, int k, float* sums)
    {
        float* a0 = a, a1 = Row(a, rowStride, 1, rows), a2 = Row(a, rowStride, 2, rows), a3 = Row(a, rowStride, 3, rows);
        int p = 0;
        Vector256<float> c00 = default, c10 = default, c20 = default, c30 = default, c01 = default, c11 = default, c21 = default, c31 = default;
        for (; p + 8 <= k; p += 8)
        {
            var x0 = Vector256.Load(b0 + p);
            var x1 = Vector256.Load(b1 + p);
            var r0 = Vector256.Load(a0 + p);
            var r1 = Vector256.Load(a1 + p);
            var r2 = Vector256.Load(a2 + p);
            var r3 = Vector256.Load(a3 + p);
            c00 = Vector256.FusedMultiplyAdd(r0, x0, c00); c01 = Vector256.FusedMultiplyAdd(r0, x1, c01);
            c10 = Vector256.FusedMultiplyAdd(r1, x0, c10); c11 = Vector256.FusedMultiplyAdd(r1, x1, c11);
            c20 = Vector256.FusedMultiplyAdd(r2, x0, c20); c21 = Vector256.FusedMultiplyAdd(r2, x1, c21);
            c30 = Vector256.FusedMultiplyAdd(r3, x0, c30); c31 = Vector256.FusedMultiplyAdd(r3, x1, c31);
        }
        sums[0] = Vector256.Sum(c00); sums[1] = Vector256.Sum(c10); sums[2] = Vector256.Sum(c20); sums[3] = Vector256.Sum(c30);
        sums[4] = Vector256.Sum(c01); sums[5] = Vector256.Sum(c11); sums[6] = Vector256.Sum(c21); sums[7] = Vector256.Sum(c31);
        for (; p < k; p++)
        {
            float x0 = b0[p], x1 = b1[p];
            sums[0] = MathF.FusedMultiplyAdd(a0[p], x0, sums[0]); sums[4] = MathF.FusedMultiplyAdd(a0[p], x1, sums[4]);
            sums[1] = MathF.FusedMultiplyAdd(a1[p], x0, sums[1]); sums[5] = MathF.FusedMultiplyAdd(a1[p], x1, sums[5]);
            sums[2] = MathF.FusedMultiplyAdd(a2[p], x0, sums[2]); sums[6] = MathF.FusedMultiplyAdd(a2[p], x1, sums[6]);
            sums[3] = MathF.FusedMultiplyAdd(a3[p], x0, sums[3]); sums[7] = MathF.FusedMultiplyAdd(a3[p], x1, sums[7]);
        }
    }

    /// <summary>
    /// sums[r] = a_r · b0 and sums[10 + r] = a_r · b1 for up to ten rows a_r = a + r·rowStride, over k
    /// values: twenty 512-bit sums, the two weight vectors and one row vector fill 23 of 32 registers.
    /// </summary>
    /// <param name="a">The first row; the others follow at <paramref name="rowStride"/>.</param>
    /// <param name="rowStride">Floats between consecutive rows of <paramref name="a"/>.</param>
    /// <param name="rows">Rows present (1-10); the missing ones repeat the last and their sums are not used.</param>
    /// <param name="b0">The first weight vector, k values.</param>
    /// <param name="b1">The second weight vector, k values.</param>
    /// <param name="ahead">
    /// Offset from b0 and b1 to the weight rows two pairs later, fetched into cache while these are
    /// summed: each pass reads a chunk of only ~3 KB from a row before jumping to the next pair, too
    /// short for the hardware prefetcher to ramp up (a 3136 x 1024 linear forward at batch 10 with the weight coming
    /// from L3, as in training: 1.08-1.11 -> 0.90-0.94 ms, old and new builds interleaved, 2 threads).
    /// </param>
    /// <param name="k">Length of the dot products.</param>
    /// <param name="sums">20 results, written.</param>
    private static void Dot10x2(float* a, nint rowStride, int rows, float* b0, float* b1, nint ahead, int k, float* sums)
    {
        float* a0 = a, a1 = Row(a, rowStride, 1, rows), a2 = Row(a, rowStride, 2, rows), a3 = Row(a, rowStride, 3, rows),
            a4 = Row(a, rowStride, 4, rows), a5 = Row(a, rowStride, 5, rows), a6 = Row(a, rowStride, 6, rows),
            a7 = Row(a, rowStride, 7, rows), a8 = Row(a, rowStride, 8, rows), a9 = Row(a, rowStride, 9, rows);
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default,
            c5 = default, c6 = default, c7 = default, c8 = default, c9 = default;
        Vector512<float> d0 = default, d1 = default, d2 = default, d3 = default, d4 = default,
            d5 = default, d6 = default, d7 = default, d8 = default, d9 = default;
        int p = 0;
        for (; p + 16 <= k; p += 16)
        {
            var x0 = Vector512.Load(b0 + p);
            var x1 = Vector512.Load(b1 + p);
            Sse.Prefetch0(b0 + p + ahead);
            Sse.Prefetch0(b1 + p + ahead);
            var r = Vector512.Load(a0 + p); c0 = Vector512.FusedMultiplyAdd(r, x0, c0); d0 = Vector512.FusedMultiplyAdd(r, x1, d0);
            r = Vector512.Load(a1 + p); c1 = Vector512.FusedMultiplyAdd(r, x0, c1); d1 = Vector512.FusedMultiplyAdd(r, x1, d1);
            r = Vector512.Load(a2 + p); c2 = Vector512.FusedMultiplyAdd(r, x0, c2); d2 = Vector512.FusedMultiplyAdd(r, x1, d2);
            r = Vector512.Load(a3 + p); c3 = Vector512.FusedMultiplyAdd(r, x0, c3); d3 = Vector512.FusedMultiplyAdd(r, x1, d3);
            r = Vector512.Load(a4 + p); c4 = Vector512.FusedMultiplyAdd(r, x0, c4); d4 = Vector512.FusedMultiplyAdd(r, x1, d4);
            r = Vector512.Load(a5 + p); c5 = Vector512.FusedMultiplyAdd(r, x0, c5); d5 = Vector512.FusedMultiplyAdd(r, x1, d5);
            r = Vector512.Load(a6 + p); c6 = Vector512.FusedMultiplyAdd(r, x0, c6); d6 = Vector512.FusedMultiplyAdd(r, x1, d6);
            r = Vector512.Load(a7 + p); c7 = Vector512.FusedMultiplyAdd(r, x0, c7); d7 = Vector512.FusedMultiplyAdd(r, x1, d7);
            r = Vector512.Load(a8 + p); c8 = Vector512.FusedMultiplyAdd(r, x0, c8); d8 = Vector512.FusedMultiplyAdd(r, x1, d8);
            r = Vector512.Load(a9 + p); c9 = Vector512.FusedMultiplyAdd(r, x0, c9); d9 = Vector512.FusedMultiplyAdd(r, x1, d9);
        }
        sums[0] = Vector512.Sum(c0); sums[1] = Vector512.Sum(c1); sums[2] = Vector512.Sum(c2); sums[3] = Vector512.Sum(c3); sums[4] = Vector512.Sum(c4);
        sums[5] = Vector512.Sum(c5); sums[6] = Vector512.Sum(c6); sums[7] = Vector512.Sum(c7); sums[8] = Vector512.Sum(c8); sums[9] = Vector512.Sum(c9);
        sums[10] = Vector512.Sum(d0); sums[11] = Vector512.Sum(d1); sums[12] = Vector512.Sum(d2); sums[13] = Vector512.Sum(d3); sums[14] = Vector512.Sum(d4);
        sums[15] = Vector512.Sum(d5); sums[16] = Vector512.Sum(d6); sums[17] = Vector512.Sum(d7); sums[18] = Vector512.Sum(d8); sums[19] = Vector512.Sum(d9);
        for (int r = 0; r < rows; r++)
        {
            float* row = a + r * rowStride;
            for (int q = p; q < k; q++)
            {
                sums[r] = MathF.FusedMultiplyAdd(row[q], b0[q], sums[r]);
                sums[10 + r] = MathF.FusedMultiplyAdd(row[q], b1[q], sums[10 + r]);
            }
        }
    }

    /// <summary>Dot products of up to four contiguous rows (a + r·rowStride) with b over k values.</summary>
    private static void Dot4(float* a, nint rowStride, int rows, float* b, int k, out float s0, out float s1, out float s2, out float s3)
    {
        float* a0 = a, a1 = Row(a, rowStride, 1, rows), a2 = Row(a, rowStride, 2, rows), a3 = Row(a, rowStride, 3, rows);
        int p = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> v0 = default, v1 = default, v2 = default, v3 = default;
            for (; p + 16 <= k; p += 16)
            {
                var x = Vector512.Load(b + p);
                v0 = Vector512.FusedMultiplyAdd(Vector512.Load(a0 + p), x, v0);
                v1 = Vector512.FusedMultiplyAdd(Vector512.Load(a1 + p), x, v1);
                v2 = Vector512.FusedMultiplyAdd(Vector512.Load(a2 + p), x, v2);
                v3 = Vector512.FusedMultiplyAdd(Vector512.Load(a3 + p), x, v3);
            }
            s0 = Vector512.Sum(v0); s1 = Vector512.Sum(v1); s2 = Vector512.Sum(v2); s3 = Vector512.Sum(v3);
        }
        else
        {
            Vector256<float> v0 = default, v1 = default, v2 = default, v3 = default;
            for (; p + 8 <= k; p += 8)
            {
                var x = Vector256.Load(b + p);
                v0 = Vector256.FusedMultiplyAdd(Vector256.Load(a0 + p), x, v0);
                v1 = Vector256.FusedMultiplyAdd(Vector256.Load(a1 + p), x, v1);
                v2 = Vector256.FusedMultiplyAdd(Vector256.Load(a2 + p), x, v2);
                v3 = Vector256.FusedMultiplyAdd(Vector256.Load(a3 + p), x, v3);
            }
            s0 = Vector256.Sum(v0); s1 = Vector256.Sum(v1); s2 = Vector256.Sum(v2); s3 = Vector256.Sum(v3);
        }
        for (; p < k; p++)
        {
            float x = b[p];
            s0 = MathF.FusedMultiplyAdd(a0[p], x, s0); s1 = MathF.FusedMultiplyAdd(a1[p], x, s1);
            s2 = MathF.FusedMultiplyAdd(a2[p], x, s2); s3 = MathF.FusedMultiplyAdd(a3[p], x, s3);
        }
    }

    /// <summary>As <see cref="Dot4"/> for a transposed A (rows are columns of the stored matrix): scalar, rare.</summary>
    private static void Dot4Strided(float* a, nint rowStride, nint depthStride, int rows, float* b, int k, out float s0, out float s1, out float s2, out float s3)
    {
        float* a0 = a, a1 = Row(a, rowStride, 1, rows), a2 = Row(a, rowStride, 2, rows), a3 = Row(a, rowStride, 3, rows);
        s0 = s1 = s2 = s3 = 0;
        for (int p = 0; p < k; p++)
        {
            float x = b[p];
            nint o = p * depthStride;
            s0 = MathF.FusedMultiplyAdd(a0[o], x, s0); s1 = MathF.FusedMultiplyAdd(a1[o], x, s1);
            s2 = MathF.FusedMultiplyAdd(a2[o], x, s2); s3 = MathF.FusedMultiplyAdd(a3[o], x, s3);
        }
    }

    /// <summary>Row r of a sliver; rows past the valid ones repeat the last valid row (their results are dropped).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* Row(float* a, nint rowStride, int r, int rows) => a + Row(rowStride, r, rows);

    /// <summary>Offset of row r, as <see cref="Row(float*, nint, int, int)"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nint Row(nint rowStride, int r, int rows) => Math.Min(r, rows - 1) * rowStride;

    /// <summary>
    /// C tile (+)= op(A) sliver · B panel. Row r of the sliver starts at a + r·rowStride and steps
    /// depthStride per k; the panel steps bStride per k. Meanwhile the kernel brings the C tile into L1
    /// (16 lines, one every eight depth steps) and the rows of <paramref name="prefetch"/> into L2, spread
    /// evenly over its depth steps.
    /// </summary>
    /// <remarks>
    /// Both prefetches run inside the loop so that they never queue up: issued back to back before the
    /// kernel (as the next B panel's slice was), they waited for free miss buffers, ~5% of 2048^3's time;
    /// and a C tile read from L3 after the loop cost ~7% of the kernel's time (perf, one thread). A row of
    /// a B read in place (rows ldb apart, beyond the reach of the hardware prefetchers) takes two or three
    /// lines; three are asked for, whichever its alignment (the weight gradient of a 5x5 convolution
    /// from 32 to 64 channels at 14 x 14: +12-49%). In
    /// process against the kernels without them (medians of ten rounds, 2048^3): +8-9% at one and two
    /// threads with 512-bit vectors, +13-18% for the 6 x 16 kernel (with its fixed row offsets); that
    /// convolution's products 1.0-1.07x. The sums are untouched.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MicroKernel(int kc, float* a, nint rowStride, nint depthStride, int rows, float* b, nint bStride, float* c, int ldc, bool accumulate,
        PanelRows prefetch)
    {
        // A packed sliver (rows adjacent, MR values a depth step) gets its own compiled kernel with the row
        // offsets as constants: in registers they left too few for the loop, which reloaded two of them
        // from the stack every step (2048^3 +4-11%, in-process A/B).
        bool packed = rowStride == 1 && depthStride == MR && rows == MR;
        if (Vector512.IsHardwareAccelerated)
        {
            if (packed) MicroKernel8x32<PackedSliver>(kc, a, 1, MR, MR, b, bStride, c, ldc, accumulate, prefetch);
            else MicroKernel8x32<StridedRows>(kc, a, rowStride, depthStride, rows, b, bStride, c, ldc, accumulate, prefetch);
        }
        else
        {
            if (packed) MicroKernel6x16<PackedSliver>(kc, a, 1, MR, MR, b, bStride, c, ldc, accumulate, prefetch);
            else MicroKernel6x16<StridedRows>(kc, a, rowStride, depthStride, rows, b, bStride, c, ldc, accumulate, prefetch);
        }
    }

    /// <summary>
    /// How a sliver's rows lie, known when the kernel is compiled: each layout is a separate instantiation,
    /// so <see cref="Packed"/> is a constant there and a packed sliver's offsets fold into the loads.
    /// </summary>
    private interface ISliverLayout
    {
        static abstract bool Packed { get; }
    }

    /// <summary>Row r at a + r, MR values a depth step (what <see cref="PackA"/> writes).</summary>
    private readonly struct PackedSliver : ISliverLayout
    {
        public static bool Packed => true;
    }

    /// <summary>Row r at a + r·rowStride, depthStride a step (A read in place).</summary>
    private readonly struct StridedRows : ISliverLayout
    {
        public static bool Packed => false;
    }

    /// <summary>Rows of a B panel to prefetch: <see cref="Count"/> rows of NR values, <see cref="Stride"/> apart.</summary>
    private readonly struct PanelRows(float* first, int count, nint stride)
    {
        public readonly float* First = first;
        public readonly int Count = count;
        public readonly nint Stride = stride;

        /// <summary>Just past the last row.</summary>
        public float* End => First + Count * Stride;

        /// <summary>Depth steps between two rows' prefetches: a power of two, so that all rows are asked for within kc steps.</summary>
        public int Interval(int kc)
        {
            int interval = 1;
            if (Count > 0) while (2 * interval * Count <= kc) interval *= 2;
            return interval;
        }
    }

    /// <summary>
    /// 8 x 32 tile in 16 zmm accumulators. The rows are reached from one pointer by fixed offsets, so a
    /// depth step advances two pointers, not nine (a packed A: +8-10% on 2048^3, interleaved runs).
    /// </summary>
    private static void MicroKernel8x32<TLayout>(int kc, float* a, nint rowStride, nint depthStride, int rows, float* b, nint bStride, float* c, int ldc, bool accumulate,
        PanelRows prefetch) where TLayout : struct, ISliverLayout
    {
        if (TLayout.Packed) (rowStride, depthStride, rows) = (1, 8, 8);
        nint o1 = Row(rowStride, 1, rows), o2 = Row(rowStride, 2, rows), o3 = Row(rowStride, 3, rows), o4 = Row(rowStride, 4, rows),
            o5 = Row(rowStride, 5, rows), o6 = Row(rowStride, 6, rows), o7 = Row(rowStride, 7, rows);
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default,
            c20 = default, c21 = default, c30 = default, c31 = default,
            c40 = default, c41 = default, c50 = default, c51 = default,
            c60 = default, c61 = default, c70 = default, c71 = default;
        int prefetchMask = prefetch.Interval(kc) - 1;
        float* next = prefetch.First, nextEnd = prefetch.End;
        nint nextStride = prefetch.Stride;
        for (int kk = 0; kk < kc; kk++, a += depthStride, b += bStride)
        {
            if (Sse.IsSupported)
            {
                // C row kk/16, half (kk/8)%2: the tile's 16 lines by depth step 120.
                if ((kk & 7) == 0 && kk < 128) Sse.Prefetch0(c + (kk >> 4) * ldc + ((kk >> 3) & 1) * 16);
                if ((kk & prefetchMask) == 0 && next != nextEnd)
                {
                    // A row of 32 values: two lines, or three when it is not aligned (B read in place).
                    Sse.Prefetch1(next);
                    Sse.Prefetch1(next + 16);
                    Sse.Prefetch1(next + 31);
                    next += nextStride;
                }
            }
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var x = Vector512.Create(a[0]); c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a[o1]); c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a[o2]); c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a[o3]); c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a[o4]); c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a[o5]); c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a[o6]); c60 = Vector512.FusedMultiplyAdd(x, b0, c60); c61 = Vector512.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a[o7]); c70 = Vector512.FusedMultiplyAdd(x, b0, c70); c71 = Vector512.FusedMultiplyAdd(x, b1, c71);
        }
        Store512(c, c00, c01, accumulate); c += ldc;
        Store512(c, c10, c11, accumulate); c += ldc;
        Store512(c, c20, c21, accumulate); c += ldc;
        Store512(c, c30, c31, accumulate); c += ldc;
        Store512(c, c40, c41, accumulate); c += ldc;
        Store512(c, c50, c51, accumulate); c += ldc;
        Store512(c, c60, c61, accumulate); c += ldc;
        Store512(c, c70, c71, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<float> v0, Vector512<float> v1, bool accumulate)
    {
        if (accumulate)
        {
            v0 += Vector512.Load(c);
            v1 += Vector512.Load(c + 16);
        }
        Vector512.Store(v0, c);
        Vector512.Store(v1, c + 16);
    }

    /// <summary>6 x 16 tile in 12 ymm accumulators, for CPUs without 512-bit vectors; rows by fixed offsets as in <see cref="MicroKernel8x32"/>.</summary>
    private static void MicroKernel6x16<TLayout>(int kc, float* a, nint rowStride, nint depthStride, int rows, float* b, nint bStride, float* c, int ldc, bool accumulate,
        PanelRows prefetch) where TLayout : struct, ISliverLayout
    {
        if (TLayout.Packed) (rowStride, depthStride, rows) = (1, 6, 6);
        nint o1 = Row(rowStride, 1, rows), o2 = Row(rowStride, 2, rows), o3 = Row(rowStride, 3, rows), o4 = Row(rowStride, 4, rows),
            o5 = Row(rowStride, 5, rows);
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        int prefetchMask = prefetch.Interval(kc) - 1;
        float* next = prefetch.First, nextEnd = prefetch.End;
        nint nextStride = prefetch.Stride;
        for (int kk = 0; kk < kc; kk++, a += depthStride, b += bStride)
        {
            if (Sse.IsSupported)
            {
                // C row kk/8 (16 values: one or two lines) by depth step 40.
                if ((kk & 7) == 0 && kk < 48)
                {
                    float* cRow = c + (kk >> 3) * ldc;
                    Sse.Prefetch0(cRow);
                    Sse.Prefetch0(cRow + 15);
                }
                if ((kk & prefetchMask) == 0 && next != nextEnd)
                {
                    Sse.Prefetch1(next);
                    Sse.Prefetch1(next + 15);
                    next += nextStride;
                }
            }
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a[0]); c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[o1]); c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[o2]); c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[o3]); c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a[o4]); c40 = Vector256.FusedMultiplyAdd(x, b0, c40); c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a[o5]); c50 = Vector256.FusedMultiplyAdd(x, b0, c50); c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
        }
        Store256(c, c00, c01, accumulate); c += ldc;
        Store256(c, c10, c11, accumulate); c += ldc;
        Store256(c, c20, c21, accumulate); c += ldc;
        Store256(c, c30, c31, accumulate); c += ldc;
        Store256(c, c40, c41, accumulate); c += ldc;
        Store256(c, c50, c51, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store256(float* c, Vector256<float> v0, Vector256<float> v1, bool accumulate)
    {
        if (accumulate)
        {
            v0 += Vector256.Load(c);
            v1 += Vector256.Load(c + 8);
        }
        Vector256.Store(v0, c);
        Vector256.Store(v1, c + 8);
    }
}

/// <summary>Argument checks shared by <see cref="Gemm"/> and <see cref="GemmReference"/>.</summary>
internal static class GemmChecks
{
    public static void Validate(bool transA, bool transB, int m, int n, int k,
        int aLength, int lda, int bLength, int ldb, int cLength, int ldc)
    {
        if (m < 0 || n < 0 || k < 0) throw new ArgumentException($"negative GEMM size m={m} n={n} k={k}");
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        CheckMatrix("A", aRows, aCols, aLength, lda);
        CheckMatrix("B", bRows, bCols, bLength, ldb);
        CheckMatrix("C", m, n, cLength, ldc);
    }

    private static void CheckMatrix(string name, int rows, int cols, int length, int ld)
    {
        if (rows == 0 || cols == 0) return;
        if (ld < cols) throw new ArgumentException($"GEMM {name}: leading dimension {ld} < {cols} columns");
        if ((long)(rows - 1) * ld + cols > length)
            throw new ArgumentException($"GEMM {name}: {rows}x{cols} with stride {ld} needs {(long)(rows - 1) * ld + cols} values, span has {length}");
    }
}
