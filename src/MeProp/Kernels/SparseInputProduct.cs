using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MeProp.Threading;

namespace MeProp.Kernels;

/// <summary>
/// A linear layer's product from a sparse input: y[n, o] = Σ over x[n]'s non-zero entries (k, v) of
/// v·W[o, k], for W [Out, In] (PyTorch's layout), x given as one unit per example of a
/// <see cref="SparseGradient"/> (positions k ascending), y [N, Out] overwritten. A task takes
/// <see cref="Block"/> output rows: it transposes them once into an [In, Block] panel (the rows of
/// W are strided by In, the panel's rows are contiguous and stay in cache), then every example's non-zeros
/// meet the panel, one vector load and one FMA each. The weight is read once, as a dense product at a
/// small batch reads it, but the multiply-adds are only the non-zeros'. Each output sums its entries in
/// ascending k in a fixed number of interleaved chains (four with 512-bit vectors), whichever worker runs
/// its block, so results do not depend on the thread count. The same input gives the weight gradient
/// (<see cref="AddWeightGradient"/>) and, for a layer whose earlier layers ignore dL/dx at its input's
/// zeros, the input gradient at its non-zeros (<see cref="InputGradient"/>).
/// </summary>
internal static unsafe class SparseInputProduct
{
    /// <summary>Output rows a task takes: one 512-bit vector, or two 256-bit ones.</summary>
    public const int Block = 16;

    /// <summary>Scratch floats <see cref="Multiply"/> needs: one [In, Block] panel per worker.</summary>
    public static int PanelLength(int inFeatures, int workers) => checked(workers * inFeatures * Block);

    private struct Job
    {
        public int* Counts, Positions;
        public float* Values, W, Y, Panels;
        public int Examples, In, Out, Capacity, Workers;
    }

    public static void Multiply(SparseGradient x, ReadOnlySpan<float> weight, int inFeatures, int outFeatures, Span<float> y, Span<float> panels, WorkerPool pool)
    {
        if (weight.Length < outFeatures * inFeatures || y.Length < x.Units * outFeatures)
            throw new ArgumentException("sparse-input product: span too short");
        fixed (float* w = weight, py = y) RunBlocks(x, w, py, inFeatures, outFeatures, panels, pool, &BlockTask);
    }

    /// <summary>Runs <paramref name="body"/> once per block of output rows, with x's entries, the weight (or its gradient) and y (or dy).</summary>
    private static void RunBlocks(SparseGradient x, float* w, float* y, int inFeatures, int outFeatures, Span<float> panels, WorkerPool pool, delegate*<void*, int, void> body)
    {
        if (x.PositionCount != inFeatures || panels.Length < PanelLength(inFeatures, pool.ThreadCount))
            throw new ArgumentException("sparse-input product: input of another width, or too few panels");
        fixed (int* counts = x.Counts, positions = x.Positions)
        fixed (float* values = x.Values, pp = panels)
        {
            var job = new Job
            {
                Counts = counts, Positions = positions, Values = values, W = w, Y = y, Panels = pp,
                Examples = x.Units, In = inFeatures, Out = outFeatures, Capacity = x.Capacity, Workers = pool.ThreadCount,
            };
            pool.Run((outFeatures + Block - 1) / Block, body, &job);
        }
    }

    /// <summary>
    /// The weight gradient from the same sparse input: dW[o, k] += Σ over examples n with x[n, k] != 0 of
    /// x[n, k]·dy[n, o], for dy [N, Out] (dense), dW [Out, In] added into. A task takes <see cref="Block"/>
    /// output rows: it sums into a zeroed [In, Block] panel (each non-zero input adds one vector of dy's
    /// row to one panel row), then adds the panel, transposed, into dW's rows. Each sum runs over the
    /// examples in order, whichever worker runs its block.
    /// </summary>
    public static void AddWeightGradient(SparseGradient x, ReadOnlySpan<float> dy, int inFeatures, int outFeatures, Span<float> dW, Span<float> panels, WorkerPool pool)
    {
        if (dy.Length < x.Units * outFeatures || dW.Length < outFeatures * inFeatures)
            throw new ArgumentException("sparse-input weight gradient: span too short");
        fixed (float* pdy = dy, pdw = dW) RunBlocks(x, pdw, pdy, inFeatures, outFeatures, panels, pool, &WeightGradientBlockTask);
    }

    /// <summary>dW rows [16t, 16t + 16) (in <see cref="Job.W"/>; dy in <see cref="Job.Y"/>), on worker t % Workers with its panel.</summary>
    private static void WeightGradientBlockTask(void* args, int t)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int o0 = t * Block, rows = Math.Min(Block, j.Out - o0);
        if (rows < Block || !Vector256.IsHardwareAccelerated)
        {
            // A last block narrower than a vector, or no SIMD: straight into dW.
            for (int e = 0; e < j.Examples; e++)
            {
                int* k = j.Positions + (long)e * j.Capacity;
                float* v = j.Values + (long)e * j.Capacity, dy = j.Y + (long)e * j.Out + o0;
                for (int i = 0; i < j.Counts[e]; i++)
                    for (int r = 0; r < rows; r++)
                    {
                        float* target = j.W + (long)(o0 + r) * j.In + k[i];
                        *target = MathF.FusedMultiplyAdd(v[i], dy[r], *target);
                    }
            }
            return;
        }
        float* panel = j.Panels + (long)(t % j.Workers) * j.In * Block;
        new Span<float>(panel, j.In * Block).Clear();
        for (int e = 0; e < j.Examples; e++)
        {
            int* k = j.Positions + (long)e * j.Capacity;
            float* v = j.Values + (long)e * j.Capacity, dy = j.Y + (long)e * j.Out + o0;
            int count = j.Counts[e];
            if (Vector512.IsHardwareAccelerated)
            {
                var g = Vector512.Load(dy);
                for (int i = 0; i < count; i++)
                {
                    float* row = panel + k[i] * Block;
                    Vector512.Store(Vector512.FusedMultiplyAdd(Vector512.Create(v[i]), g, Vector512.Load(row)), row);
                }
            }
            else
            {
                Vector256<float> low = Vector256.Load(dy), high = Vector256.Load(dy + 8);
                for (int i = 0; i < count; i++)
                {
                    float* row = panel + k[i] * Block;
                    var scale = Vector256.Create(v[i]);
                    Vector256.Store(Vector256.FusedMultiplyAdd(scale, low, Vector256.Load(row)), row);
                    Vector256.Store(Vector256.FusedMultiplyAdd(scale, high, Vector256.Load(row + 8)), row + 8);
                }
            }
        }
        // dW[o0 + r, k] += panel[k, r]
        ChannelLayout.RowsToPlanes(panel, j.W + (long)o0 * j.In, j.In, Block, j.In, null, accumulate: true);
    }

    /// <summary>Scratch floats <see cref="InputGradient"/> needs: one [Block, Out] panel per worker.</summary>
    public static int InputGradientPanelLength(int outFeatures, int workers) => checked(workers * outFeatures * Block);

    /// <summary>
    /// The input gradient at the input's non-zeros only: dx[n, k] = Σ_o dy[n, o]·W[o, k] where
    /// x[n, k] != 0, else 0, for x [N, In] (only whether each entry is zero is read), dy [N, Out],
    /// W [Out, In], dx [N, In] overwritten. It is dx = dy · W for a layer whose earlier layers make no use
    /// of dL/dx at its input's zeros (ReLU, then max pooling), at the cost of reading W once plus one dot
    /// product per non-zero. A task takes <see cref="Block"/> input columns: it transposes them into a
    /// [Block, Out] panel (a column of W is strided by In, a panel row is contiguous and stays in cache),
    /// then each non-zero input in those columns takes one dot product of its example's row of dy with a
    /// panel row, column by column, in a fixed order whichever worker takes the columns; columns zero in
    /// every example (after ReLU whole feature maps are, on a trained network: 20 of the paper network's
    /// 64 conv2 maps on MNIST) are written as zeros without a panel. On the paper
    /// network's fc1 at batch 100 (5% of the input non-zero) this took 0.3-0.4x the dense product's time;
    /// transposing all of W first, row block by row block, and summing each non-zero across the blocks
    /// was no faster (1.3-2x the time, in every layout and loop order tried), nor was prefetching W's rows.
    /// </summary>
    public static void InputGradient(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, ReadOnlySpan<float> weight, int examples, int inFeatures, int outFeatures,
        Span<float> dx, Span<float> panels, WorkerPool pool)
    {
        long inputs = (long)examples * inFeatures;
        if (x.Length < inputs || dx.Length < inputs || dy.Length < (long)examples * outFeatures || weight.Length < (long)outFeatures * inFeatures
            || panels.Length < InputGradientPanelLength(outFeatures, pool.ThreadCount))
            throw new ArgumentException("sparse-input input gradient: span too short");
        if (inputs == 0) return;
        fixed (float* px = x, pdy = dy, pw = weight, pdx = dx, pp = panels)
        {
            var job = new InputGradientJob
            {
                X = px, Dy = pdy, W = pw, Dx = pdx, Panels = pp,
                Examples = examples, In = inFeatures, Out = outFeatures, Workers = pool.ThreadCount,
            };
            pool.Run((inFeatures + Block - 1) / Block, &InputGradientColumnsTask, &job);
        }
    }

    private struct InputGradientJob
    {
        public float* X, Dy, W, Dx, Panels;
        public int Examples, In, Out, Workers;
    }

    /// <summary>dx's columns [16t, 16t + 16) of every example, on worker t % Workers with its panel.</summary>
    private static void InputGradientColumnsTask(void* args, int t)
    {
        ref InputGradientJob j = ref Unsafe.AsRef<InputGradientJob>(args);
        int k0 = t * Block, columns = Math.Min(Block, j.In - k0), outs = j.Out;
        float* panel = j.Panels + (long)(t % j.Workers) * outs * Block;
        if (!AnyNonZero(j.X + k0, j.In, j.Examples, columns))
        {
            // Zero in every example (a feature map that ReLU silences for the whole batch): no panel needed.
            for (int e = 0; e < j.Examples; e++) new Span<float>(j.Dx + (long)e * j.In + k0, columns).Clear();
            return;
        }
        // panel[c·Out + o] = W[o, k0 + c]: W's rows are the planes, the panel's rows the positions.
        ChannelLayout.PlanesToRows(j.W + k0, j.In, panel, outs, columns);
        // Column by column, so that the panel row stays in the nearest cache for every example.
        for (int c = 0; c < columns; c++)
        {
            var column = new ReadOnlySpan<float>(panel + (long)c * outs, outs);
            for (int e = 0; e < j.Examples; e++)
            {
                long at = (long)e * j.In + k0 + c;
                j.Dx[at] = j.X[at] != 0f ? System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<float>(j.Dy + (long)e * outs, outs), column) : 0f;
            }
        }
    }

    /// <summary>Whether any of <paramref name="rows"/> runs of <paramref name="length"/> values, <paramref name="stride"/> apart, holds a non-zero.</summary>
    private static bool AnyNonZero(float* x, int stride, int rows, int length)
    {
        for (int r = 0; r < rows; r++, x += stride)
            for (int i = 0; i < length; i++)
                if (x[i] != 0f) return true;
        return false;
    }

    /// <summary>Output rows [16t, 16t + 16) of every example, on worker t % Workers (the pool's fixed partition) with its panel.</summary>
    private static void BlockTask(void* args, int t)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int o0 = t * Block, rows = Math.Min(Block, j.Out - o0);
        float* panel = j.Panels + (long)(t % j.Workers) * j.In * Block;
        // panel[k·rows + r] = W[o0 + r, k]
        ChannelLayout.PlanesToRows(j.W + (long)o0 * j.In, j.In, panel, rows, j.In);
        for (int e = 0; e < j.Examples; e++)
        {
            int* k = j.Positions + (long)e * j.Capacity;
            float* v = j.Values + (long)e * j.Capacity;
            int count = j.Counts[e];
            float* target = j.Y + (long)e * j.Out + o0;
            if (rows == Block && Vector512.IsHardwareAccelerated)
            {
                // Four chains (entries i mod 4), so consecutive FMAs do not wait on each other's latency.
                Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
                int i = 0;
                for (; i + 4 <= count; i += 4)
                {
                    s0 = Vector512.FusedMultiplyAdd(Vector512.Create(v[i]), Vector512.Load(panel + k[i] * Block), s0);
                    s1 = Vector512.FusedMultiplyAdd(Vector512.Create(v[i + 1]), Vector512.Load(panel + k[i + 1] * Block), s1);
                    s2 = Vector512.FusedMultiplyAdd(Vector512.Create(v[i + 2]), Vector512.Load(panel + k[i + 2] * Block), s2);
                    s3 = Vector512.FusedMultiplyAdd(Vector512.Create(v[i + 3]), Vector512.Load(panel + k[i + 3] * Block), s3);
                }
                for (; i < count; i++) s0 = Vector512.FusedMultiplyAdd(Vector512.Create(v[i]), Vector512.Load(panel + k[i] * Block), s0);
                Vector512.Store((s0 + s1) + (s2 + s3), target);
            }
            else if (rows == Block && Vector256.IsHardwareAccelerated)
            {
                // Two chains per half (entries i mod 2), as above.
                Vector256<float> low0 = default, high0 = default, low1 = default, high1 = default;
                int i = 0;
                for (; i + 2 <= count; i += 2)
                {
                    var scale0 = Vector256.Create(v[i]);
                    var scale1 = Vector256.Create(v[i + 1]);
                    float* row0 = panel + k[i] * Block, row1 = panel + k[i + 1] * Block;
                    low0 = Vector256.FusedMultiplyAdd(scale0, Vector256.Load(row0), low0);
                    high0 = Vector256.FusedMultiplyAdd(scale0, Vector256.Load(row0 + 8), high0);
                    low1 = Vector256.FusedMultiplyAdd(scale1, Vector256.Load(row1), low1);
                    high1 = Vector256.FusedMultiplyAdd(scale1, Vector256.Load(row1 + 8), high1);
                }
                if (i < count)
                {
                    var scale = Vector256.Create(v[i]);
                    float* row = panel + k[i] * Block;
                    low0 = Vector256.FusedMultiplyAdd(scale, Vector256.Load(row), low0);
                    high0 = Vector256.FusedMultiplyAdd(scale, Vector256.Load(row + 8), high0);
                }
                Vector256.Store(low0 + low1, target);
                Vector256.Store(high0 + high1, target + 8);
            }
            else
            {
                // A last block narrower than a vector (an output count not a multiple of 16), or no SIMD.
                for (int r = 0; r < rows; r++)
                {
                    float sum = 0;
                    for (int i = 0; i < count; i++) sum = MathF.FusedMultiplyAdd(v[i], panel[k[i] * rows + r], sum);
                    target[r] = sum;
                }
            }
        }
    }
}

/// <summary>Twin of <see cref="SparseInputProduct"/>: the dense definitions y = x · Wᵀ, dW += dyᵀ · x and dx = dy · W (masked) as plain loops, float64 sums.</summary>
internal static class SparseInputProductReference
{
    /// <summary>dW[o, k] += Σ over examples of x[n, k]·dy[n, o]: the dense definition dW += dyᵀ · x.</summary>
    public static void AddWeightGradient(ReadOnlySpan<float> x, int examples, ReadOnlySpan<float> dy, int inFeatures, int outFeatures, Span<float> dW)
    {
        for (int o = 0; o < outFeatures; o++)
            for (int k = 0; k < inFeatures; k++)
            {
                double sum = 0;
                for (int e = 0; e < examples; e++) sum += (double)x[e * inFeatures + k] * dy[e * outFeatures + o];
                dW[o * inFeatures + k] += (float)sum;
            }
    }

    /// <summary>dx[n, k] = Σ_o dy[n, o]·W[o, k] where x[n, k] != 0, else 0: the dense dx = dy · W with the input's zeros masked.</summary>
    public static void InputGradient(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, ReadOnlySpan<float> weight, int examples, int inFeatures, int outFeatures, Span<float> dx)
    {
        for (int e = 0; e < examples; e++)
            for (int k = 0; k < inFeatures; k++)
            {
                double sum = 0;
                for (int o = 0; o < outFeatures; o++) sum += (double)dy[e * outFeatures + o] * weight[o * inFeatures + k];
                dx[e * inFeatures + k] = x[e * inFeatures + k] != 0f ? (float)sum : 0f;
            }
    }

    public static void Multiply(ReadOnlySpan<float> x, int examples, ReadOnlySpan<float> weight, int inFeatures, int outFeatures, Span<float> y)
    {
        for (int e = 0; e < examples; e++)
            for (int o = 0; o < outFeatures; o++)
            {
                double sum = 0;
                for (int k = 0; k < inFeatures; k++) sum += (double)x[e * inFeatures + k] * weight[o * inFeatures + k];
                y[e * outFeatures + o] = (float)sum;
            }
    }
}
