using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using MeProp.Kernels;
using MeProp.Threading;
using static MeProp.Sparsity.GradientScorer;

namespace MeProp.Sparsity;

/// <summary>
/// Channel selection (convolutions; ssProp's): one pool over the U output channels, each scored by the
/// mean over batch x height x width of its scores (|dy|, or the running gradient: shaped like dy, or
/// averaged over the batch as <see cref="ChannelPositionSelection"/> keeps it); keeps the k =
/// ceil(ratio·U) channels scoring highest (ties to the lower channel), every entry of them. The sparse
/// backward then computes the kept channels' dW rows and db exactly and dx from their filters only;
/// dropped channels add nothing. A channel's score is summed by one worker in a fixed order, so the
/// choice does not depend on the thread count. Ranked by the sum over the N·P entries, which orders
/// the channels as the mean does (the same divisor for all).
/// </summary>
internal sealed unsafe class ChannelSelection(MePropOptions options) : ISelectionPolicy
{
    private struct StoreJob
    {
        public SelectionJob* Selection;
        public int* Chosen;
    }

    public long Select(ref SelectionJob j, WorkerPool pool)
    {
        j.K = options.KeepCount(j.Units);
        j.Capacity = j.N * j.Plane;
        j.Scratch.Result.Reset(j.Units, j.N * j.Plane, j.Capacity);
        bool batchAveraged = j.UseRunning && options.DecayShape == DecayShape.ChannelPosition;
        var self = j.Scratch;
        fixed (SelectionJob* job = &j)
        fixed (int* chosen = self.Chosen[0])
        {
            delegate*<void*, int, int, void> score = batchAveraged ? &ScoreBatchAveragedTask : &ScoreTask;
            SelectionScratch.RunUnits(pool, j.Units, score, job);
            // Ranked on the calling thread, once the pool is idle: chosen channels ascend.
            int count = TopKSelection.Select(new ReadOnlySpan<float>(self.UnitScores, 0, j.Units), j.K, new Span<int>(chosen, j.Units));
            var store = new StoreJob { Selection = job, Chosen = chosen };
            SelectionScratch.RunUnits(pool, count, &StoreTask, &store);
        }
        return self.SumNonZeroByUnit(j.Units);
    }

    /// <summary>Channel u's score: Σ over n, p of |dy[n, u, p]| or of the running gradient shaped like dy (updated here).</summary>
    private static void ScoreTask(void* args, int u, int worker)
    {
        ref SelectionJob j = ref Unsafe.AsRef<SelectionJob>(args);
        var self = j.Scratch;
        long nonZero = 0;
        double sum = 0;
        fixed (float* scores = self.Scores[worker])
        {
            for (int n = 0; n < j.N; n++)
            {
                long offset = ((long)n * j.Units + u) * j.Plane;
                nonZero += ScoreRow(j.Dy + offset, j.UseRunning ? j.Running + offset : null, scores, j.Plane, j.Decay, null, 0, 0);
                sum += TensorPrimitives.Sum(new ReadOnlySpan<float>(scores, j.Plane));
            }
        }
        self.NonZeroByUnit[u] = nonZero;
        self.UnitScores[u] = (float)sum;
    }

    /// <summary>
    /// Channel u's score with the running gradient averaged over the batch, run[u, p] = decay·run[u, p] +
    /// (1-decay)·mean over n of |dy[n, u, p]| (as <see cref="ChannelPositionSelection"/>): Σ over p of run[u, p].
    /// </summary>
    private static void ScoreBatchAveragedTask(void* args, int u, int worker)
    {
        ref SelectionJob j = ref Unsafe.AsRef<SelectionJob>(args);
        float inverseN = 1f / j.N;
        long nonZero = 0;
        double sum = 0;
        for (int p = 0; p < j.Plane; p++)
        {
            float mean = 0;
            for (int n = 0; n < j.N; n++)
            {
                float v = j.Dy[((long)n * j.Units + u) * j.Plane + p];
                if (v != 0) nonZero++;
                mean += MathF.Abs(v);
            }
            long r = (long)u * j.Plane + p;
            j.Running[r] = FlushTiny(j.Decay * j.Running[r] + (1 - j.Decay) * mean * inverseN);
            sum += j.Running[r];
        }
        j.Scratch.NonZeroByUnit[u] = nonZero;
        j.Scratch.UnitScores[u] = (float)sum;
    }

    /// <summary>Stores every non-zero entry of the t-th chosen channel (positions ascending) and counts all N·P as selected.</summary>
    private static void StoreTask(void* args, int t, int worker)
    {
        var store = (StoreJob*)args;
        ref SelectionJob j = ref *store->Selection;
        var result = j.Scratch.Result;
        int u = store->Chosen[t], plane = j.Plane, slot = 0;
        fixed (int* positionStart = result.Positions)
        fixed (float* valueStart = result.Values)
        {
            int* positions = positionStart + (long)u * j.Capacity;
            float* values = valueStart + (long)u * j.Capacity;
            for (int n = 0; n < j.N; n++)
            {
                float* row = j.Dy + ((long)n * j.Units + u) * plane;
                int positionBase = n * plane;
                for (int p = 0; p < plane; p++)
                {
                    // Written always, kept by advancing the slot only for a non-zero value (as SelectionScratch.Store).
                    float value = row[p];
                    positions[slot] = positionBase + p;
                    values[slot] = value;
                    slot += value != 0 ? 1 : 0;
                }
            }
        }
        result.Counts[u] = slot;
        j.Scratch.SelectedByUnit[u] += (long)j.N * plane;
    }
}
