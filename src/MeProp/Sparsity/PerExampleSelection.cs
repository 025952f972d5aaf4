using MeProp.Kernels;
using MeProp.Threading;
using static MeProp.Sparsity.GradientScorer;

namespace MeProp.Sparsity;

/// <summary>
/// Per example (linear layers, the original meProp): each row of dy [N, U] keeps its k = ceil(ratio·U)
/// largest; entries are regrouped by unit. Scored with |dy| or the running gradient shaped like dy.
/// </summary>
internal sealed class PerExampleSelection(MePropOptions options) : ISelectionPolicy
{
    public long Select(ref SelectionJob j, WorkerPool pool)
    {
        int k = options.KeepCount(j.Units);
        var self = j.Scratch;
        self.Result.Reset(j.Units, j.N, j.N);
        var scores = self.Scores[0].AsSpan(0, j.Units);
        var chosen = self.Chosen[0].AsSpan();
        for (int n = 0; n < j.N; n++)
        {
            long offset = (long)n * j.Units;
            for (int u = 0; u < j.Units; u++) scores[u] = Score(ref j, offset + u);
            int count = TopKSelection.Select(scores, k, chosen);
            self.AppendRow(ref j, n, chosen[..count]);
        }
        return j.CountNonZero();
    }
}
