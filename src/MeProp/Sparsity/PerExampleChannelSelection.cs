using System.Runtime.CompilerServices;
using MeProp.Kernels;
using MeProp.Threading;
using static MeProp.Sparsity.GradientScorer;

namespace MeProp.Sparsity;

/// <summary>
/// Per example and channel (convolutions): one pool per (n, u), the P positions of one example's feature
/// map; keeps k = ceil(ratio·P) of each. Scored with |dy| or the running gradient shaped like dy.
/// </summary>
internal sealed unsafe class PerExampleChannelSelection(MePropOptions options) : ISelectionPolicy
{
    public long Select(ref SelectionJob j, WorkerPool pool)
    {
        j.K = options.KeepCount(j.Plane);
        j.Capacity = j.N * j.K;
        j.Scratch.Result.Reset(j.Units, j.N * j.Plane, j.Capacity);
        fixed (SelectionJob* job = &j) SelectionScratch.RunUnits(pool, j.Units, &PerExampleChannelTask, job);
        return j.Scratch.SumNonZeroByUnit(j.Units);
    }

    private static void PerExampleChannelTask(void* args, int u, int worker)
    {
        ref SelectionJob j = ref Unsafe.AsRef<SelectionJob>(args);
        var self = j.Scratch;
        var scores = self.Scores[worker].AsSpan(0, j.Plane);
        var chosen = self.Chosen[worker].AsSpan();
        long nonZero = 0;
        int slot = 0;
        for (int n = 0; n < j.N; n++)
        {
            long offset = ((long)n * j.Units + u) * j.Plane;
            fixed (float* pScores = scores)
                nonZero += ScoreRow(j.Dy + offset, j.UseRunning ? j.Running + offset : null, pScores, j.Plane, j.Decay, null, 0, 0);
            int count = TopKSelection.Select(scores, j.K, chosen);
            slot = self.Store(ref j, u, slot, chosen[..count], positionBase: n * j.Plane);
        }
        self.NonZeroByUnit[u] = nonZero;
    }
}
