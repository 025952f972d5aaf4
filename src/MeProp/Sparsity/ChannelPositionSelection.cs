using System.Runtime.CompilerServices;
using MeProp.Kernels;
using MeProp.Threading;
using static MeProp.Sparsity.GradientScorer;

namespace MeProp.Sparsity;

/// <summary>
/// Convolutions with the running gradient kept per channel and position, averaged over the batch
/// (<see cref="DecayShape.ChannelPosition"/>): run[u, p] = decay·run[u, p] + (1-decay)·mean over n of
/// |dy[n, u, p]|; each unit keeps the k = ceil(ratio·P) positions with the largest run, the same
/// positions in every example. (A linear layer's batch-averaged selection is
/// <see cref="UnifiedSelection"/> on the averaged running gradient.)
/// </summary>
internal sealed unsafe class ChannelPositionSelection(MePropOptions options) : ISelectionPolicy
{
    public long Select(ref SelectionJob j, WorkerPool pool)
    {
        j.K = options.KeepCount(j.Plane);
        j.Capacity = j.N * j.K;
        j.Scratch.Result.Reset(j.Units, j.N * j.Plane, j.Capacity);
        fixed (SelectionJob* job = &j) SelectionScratch.RunUnits(pool, j.Units, &ChannelPositionTask, job);
        return j.Scratch.SumNonZeroByUnit(j.Units);
    }

    private static void ChannelPositionTask(void* args, int u, int worker)
    {
        ref SelectionJob j = ref Unsafe.AsRef<SelectionJob>(args);
        var self = j.Scratch;
        var scores = self.Scores[worker].AsSpan(0, j.Plane);
        float inverseN = 1f / j.N;
        long nonZero = 0;
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
            scores[p] = j.Running[r];
        }
        self.NonZeroByUnit[u] = nonZero;
        var chosen = self.Chosen[worker].AsSpan();
        int count = TopKSelection.Select(scores, j.K, chosen);
        int slot = 0;
        for (int n = 0; n < j.N; n++) slot = self.Store(ref j, u, slot, chosen[..count], positionBase: n * j.Plane);
    }
}
