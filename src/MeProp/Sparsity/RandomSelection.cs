using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Sparsity;

/// <summary>
/// The random-k baseline: the layer's default pools (per channel for a convolution, per example for a
/// linear layer) with the same k, but k uniform positions of each (partial Fisher-Yates, then sorted),
/// drawn from one seeded generator in a fixed order, so on the calling thread. Scores are not used.
/// </summary>
internal sealed class RandomSelection(MePropOptions options, bool convolutional, Rng rng) : ISelectionPolicy
{
    public long Select(ref SelectionJob j, WorkerPool pool)
    {
        var self = j.Scratch;
        var order = self.Chosen[0];
        if (convolutional)
        {
            j.K = options.KeepCount(j.N * j.Plane);
            int poolSize = j.N * j.Plane;
            j.Capacity = j.K;
            self.Result.Reset(j.Units, poolSize, j.K);
            for (int u = 0; u < j.Units; u++)
            {
                var picked = DrawSorted(order.AsSpan(0, poolSize), j.K);
                self.Store(ref j, u, 0, picked, positionBase: 0);
            }
        }
        else
        {
            j.K = options.KeepCount(j.Units);
            self.Result.Reset(j.Units, j.N, j.N);
            for (int n = 0; n < j.N; n++) self.AppendRow(ref j, n, DrawSorted(order.AsSpan(0, j.Units), j.K));
        }
        return j.CountNonZero();
    }

    private Span<int> DrawSorted(Span<int> order, int k)
    {
        for (int i = 0; i < order.Length; i++) order[i] = i;
        for (int i = 0; i < k; i++)
        {
            int r = i + rng.NextInt(order.Length - i);
            (order[i], order[r]) = (order[r], order[i]);
        }
        var picked = order[..k];
        picked.Sort();
        return picked;
    }
}
