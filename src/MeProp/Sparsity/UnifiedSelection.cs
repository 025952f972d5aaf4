using MeProp.Kernels;
using MeProp.Threading;
using static MeProp.Sparsity.GradientScorer;

namespace MeProp.Sparsity;

/// <summary>
/// Unified (linear layers): one set of k = ceil(ratio·U) units for the whole batch, kept for every
/// example, so the backward is two small dense products. Units are scored by the sum over the batch of
/// their scores (|dy| or the running gradient shaped like dy), or, with
/// <paramref name="batchAveragedRunning"/> (the running gradient kept per unit and averaged over the
/// batch, <see cref="DecayShape.ChannelPosition"/>), by run[u] = decay·run[u] + (1-decay)·mean over n of |dy[n, u]|.
/// </summary>
internal sealed unsafe class UnifiedSelection(MePropOptions options, bool batchAveragedRunning) : ISelectionPolicy
{
    public long Select(ref SelectionJob j, WorkerPool pool)
    {
        int k = options.KeepCount(j.Units);
        var self = j.Scratch;
        self.Result.Reset(j.Units, j.N, j.N);
        var scores = self.UnitScores.AsSpan(0, j.Units);
        scores.Clear();
        if (batchAveragedRunning)
        {
            for (int u = 0; u < j.Units; u++)
            {
                float mean = 0;
                for (int n = 0; n < j.N; n++) mean += MathF.Abs(j.Dy[(long)n * j.Units + u]);
                j.Running[u] = FlushTiny(j.Decay * j.Running[u] + (1 - j.Decay) * mean / j.N);
                scores[u] = j.Running[u];
            }
        }
        else
        {
            for (int n = 0; n < j.N; n++)
                for (int u = 0; u < j.Units; u++) scores[u] += Score(ref j, (long)n * j.Units + u);
        }
        var chosen = self.Chosen[0].AsSpan();
        int count = TopKSelection.Select(scores, k, chosen);
        for (int n = 0; n < j.N; n++) self.AppendRow(ref j, n, chosen[..count]);
        return j.CountNonZero();
    }
}
