using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MeProp.Threading;

namespace MeProp.Kernels;

/// <summary>
/// Single-precision matrix product C[m,n] = op(A)[m,k] · op(B)[k,n], or C += that product.
/// Legend: row-major storage; op(X) is X or its transpose; lda/ldb/ldc are row strides of the stored
/// matrices; MR x NR is the register tile, KC the depth of a packed block, MC the rows of a task.
/// B is packed once into NR-wide panels (shared, read-only); each task packs its own MR-row slivers
/// of A and runs an FMA micro-kernel on MR x NR tiles held in registers. Tasks own disjoint tiles of
/// C and every element sums over k in the same order, so the result does not depend on the thread
/// count. Owns its packing buffers; one instance must not be used from two threads at once.
/// </summary>
public sealed unsafe class Gemm
{
    /// <summary>Rows of the register tile: 8 with 512-bit vectors, 6 with 256-bit ones (fits 16 registers).</summary>
    internal static readonly int MR = Vector512.IsHardwareAccelerated ? 8 : 6;
    /// <summary>Columns of the register tile: two vectors.</summary>
    internal static readonly int NR = Vector512.IsHardwareAccelerated ? 32 : 16;
    private const int KC = 256;
    private const int MC = 96; // a multiple of both MR values

    private readonly WorkerPool _pool;
    private float[] _packedB = [];
    private readonly float[][] _packedA;

    public Gemm(WorkerPool pool)
    {
        _pool = pool;
        _packedA = new float[pool.ThreadCount][];
        for (int i = 0; i < _packedA.Length; i++) _packedA[i] = GC.AllocateUninitializedArray<float>(MC * KC, pinned: true);
    }

    private struct Job
    {
        public float* A, B, C, PackedB;
        public int M, N, K, Lda, Ldb, Ldc;
        public bool TransA, TransB, Accumulate;
        public int PaddedN, RowBlocks, ColumnSplits, PanelsPerSplit;
        public Gemm Self;
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
        int nr = NR;
        int panels = (n + nr - 1) / nr;
        int paddedN = panels * nr;
        int packedLength = paddedN * k;
        if (_packedB.Length < packedLength) _packedB = GC.AllocateUninitializedArray<float>(packedLength, pinned: true);

        int rowBlocks = (m + MC - 1) / MC;
        int wanted = 2 * _pool.ThreadCount;
        int columnSplits = rowBlocks >= wanted ? 1 : Math.Min(panels, (wanted + rowBlocks - 1) / rowBlocks);
        int panelsPerSplit = (panels + columnSplits - 1) / columnSplits;
        columnSplits = (panels + panelsPerSplit - 1) / panelsPerSplit;

        fixed (float* pa = a, pb = b, pc = c, ppb = _packedB)
        {
            var job = new Job
            {
                A = pa, B = pb, C = pc, PackedB = ppb, M = m, N = n, K = k, Lda = lda, Ldb = ldb, Ldc = ldc,
                TransA = transA, TransB = transB, Accumulate = accumulate, PaddedN = paddedN,
                RowBlocks = rowBlocks, ColumnSplits = columnSplits, PanelsPerSplit = panelsPerSplit, Self = this,
            };
            _pool.Run(panels, &PackBTask, &job);
            _pool.Run(rowBlocks * columnSplits, &TileTask, &job);
        }
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
                    if (width == nr) Buffer.MemoryCopy(src, row, nr * sizeof(float), nr * sizeof(float));
                    else
                    {
                        for (int jj = 0; jj < width; jj++) row[jj] = src[jj];
                        for (int jj = width; jj < nr; jj++) row[jj] = 0;
                    }
                }
                else
                {
                    float* src = j.B + (long)j0 * j.Ldb + kIndex;
                    for (int jj = 0; jj < width; jj++) row[jj] = src[(long)jj * j.Ldb];
                    for (int jj = width; jj < nr; jj++) row[jj] = 0;
                }
            }
        }
    }

    /// <summary>Computes one task's tile of C: MC rows by a run of column panels, over all of k.</summary>
    private static void TileTask(void* args, int task)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int mr = MR, nr = NR;
        int rowBlock = task / j.ColumnSplits;
        int split = task % j.ColumnSplits;
        int i0 = rowBlock * MC;
        int rows = Math.Min(MC, j.M - i0);
        int panel0 = split * j.PanelsPerSplit;
        int panelEnd = Math.Min(panel0 + j.PanelsPerSplit, (j.N + nr - 1) / nr);
        float[] scratch = j.Self._packedA[task % j.Self._pool.ThreadCount];
        float* edge = stackalloc float[8 * 32];
        fixed (float* packedA = scratch)
        {
            for (int p0 = 0; p0 < j.K; p0 += KC)
            {
                int kc = Math.Min(KC, j.K - p0);
                PackA(ref j, packedA, i0, rows, p0, kc);
                bool accumulate = j.Accumulate || p0 > 0;
                for (int panel = panel0; panel < panelEnd; panel++)
                {
                    float* bPanel = j.PackedB + (long)p0 * j.PaddedN + (long)panel * kc * nr;
                    int c0 = panel * nr;
                    int cols = Math.Min(nr, j.N - c0);
                    for (int ir = 0; ir < rows; ir += mr)
                    {
                        int tileRows = Math.Min(mr, rows - ir);
                        float* aSliver = packedA + ir * kc;
                        float* cTile = j.C + (long)(i0 + ir) * j.Ldc + c0;
                        if (tileRows == mr && cols == nr)
                        {
                            MicroKernel(kc, aSliver, bPanel, cTile, j.Ldc, accumulate);
                        }
                        else
                        {
                            // Edge tile: compute a full tile into scratch, then copy the valid part.
                            MicroKernel(kc, aSliver, bPanel, edge, nr, false);
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
    }

    /// <summary>Packs rows [i0, i0+rows) x depth [p0, p0+kc) of op(A) into MR-row slivers, zero-padded.</summary>
    private static void PackA(ref Job j, float* dst, int i0, int rows, int p0, int kc)
    {
        int mr = MR;
        for (int ir = 0; ir < rows; ir += mr)
        {
            int tileRows = Math.Min(mr, rows - ir);
            float* sliver = dst + ir * kc;
            if (!j.TransA)
            {
                for (int r = 0; r < tileRows; r++)
                {
                    float* src = j.A + (long)(i0 + ir + r) * j.Lda + p0;
                    for (int kk = 0; kk < kc; kk++) sliver[kk * mr + r] = src[kk];
                }
            }
            else
            {
                for (int kk = 0; kk < kc; kk++)
                {
                    float* src = j.A + (long)(p0 + kk) * j.Lda + i0 + ir;
                    float* d = sliver + kk * mr;
                    for (int r = 0; r < tileRows; r++) d[r] = src[r];
                }
            }
            if (tileRows < mr)
                for (int kk = 0; kk < kc; kk++)
                    for (int r = tileRows; r < mr; r++) sliver[kk * mr + r] = 0;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MicroKernel(int kc, float* a, float* b, float* c, int ldc, bool accumulate)
    {
        if (Vector512.IsHardwareAccelerated) MicroKernel8x32(kc, a, b, c, ldc, accumulate);
        else MicroKernel6x16(kc, a, b, c, ldc, accumulate);
    }

    /// <summary>8 x 32 tile in 16 zmm accumulators; a is an 8-row sliver, b a 32-wide panel.</summary>
    private static void MicroKernel8x32(int kc, float* a, float* b, float* c, int ldc, bool accumulate)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default,
            c20 = default, c21 = default, c30 = default, c31 = default,
            c40 = default, c41 = default, c50 = default, c51 = default,
            c60 = default, c61 = default, c70 = default, c71 = default;
        for (int kk = 0; kk < kc; kk++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var x = Vector512.Create(a[0]); c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a[6]); c60 = Vector512.FusedMultiplyAdd(x, b0, c60); c61 = Vector512.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a[7]); c70 = Vector512.FusedMultiplyAdd(x, b0, c70); c71 = Vector512.FusedMultiplyAdd(x, b1, c71);
            a += 8;
            b += 32;
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

    /// <summary>6 x 16 tile in 12 ymm accumulators, for CPUs without 512-bit vectors.</summary>
    private static void MicroKernel6x16(int kc, float* a, float* b, float* c, int ldc, bool accumulate)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int kk = 0; kk < kc; kk++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a[0]); c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]); c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]); c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]); c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a[4]); c40 = Vector256.FusedMultiplyAdd(x, b0, c40); c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a[5]); c50 = Vector256.FusedMultiplyAdd(x, b0, c50); c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
            a += 6;
            b += 16;
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
