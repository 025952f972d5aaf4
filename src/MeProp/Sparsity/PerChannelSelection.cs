using System.Runtime.CompilerServices;
using MeProp.Kernels;
using MeProp.Threading;
using static MeProp.Sparsity.GradientScorer;

namespace MeProp.Sparsity;

/// <summary>
/// Per channel (meProp-CNN): one pool per unit, dy[:, u, :] (N·P entries: a conv feature map over the
/// batch, or a linear output over the batch); keeps k = ceil(ratio·N·P) of each. Scored with |dy| or the
/// running gradient shaped like dy.
/// </summary>
internal sealed unsafe class PerChannelSelection(MePropOptions options) : ISelectionPolicy
{
    /// <summary>
    /// Per unit, the k-th largest score of the previous per-channel selection. Only a hint for where
    /// to cut the next step's candidates (scores change little from step to step, and not at all in
    /// order of magnitude): the selection is exact whatever it holds, so it is not checkpointed.
    /// </summary>
    private float[] _previousKthScore = [];
    /// <summary>
    /// Per unit, the fraction of the previous k-th score where candidates are cut (0.7 to start): lowered
    /// after a step with fewer than k candidates, which makes the selection gather again (with decay
    /// 0.6, 21% of a 64-channel layer's 14 x 14 maps at a fixed 0.7, 1-2% adjusted), raised slowly after one with more than
    /// 2k (ranking costs in proportion to them). A hint only, like the k-th score: the selection is
    /// exact whatever it holds.
    /// </summary>
    private float[] _floorFraction = [];

    /// <summary>Bounds and start of a unit's candidate floor, as a fraction of its previous k-th score.</summary>
    private const float InitialFloorFraction = 0.7f, MinFloorFraction = 0.25f, MaxFloorFraction = 0.97f;

    private struct Job
    {
        public SelectionJob Selection;
        public PerChannelSelection Policy;
    }

    public long Select(ref SelectionJob j, WorkerPool pool)
    {
        if (_previousKthScore.Length < j.Units)
        {
            _previousKthScore = new float[j.Units];
            _floorFraction = new float[j.Units];
            Array.Fill(_floorFraction, InitialFloorFraction);
        }
        j.K = options.KeepCount(j.N * j.Plane);
        j.Capacity = j.K;
        j.Scratch.Result.Reset(j.Units, j.N * j.Plane, j.Capacity);
        var job = new Job { Selection = j, Policy = this };
        SelectionScratch.RunUnits(pool, j.Units, &PerChannelTask, &job);
        return j.Scratch.SumNonZeroByUnit(j.Units);
    }

    /// <summary>
    /// One feature map's pool, dy[:, u, :]. Scoring also gathers as candidates the entries scoring at
    /// least the unit's floor fraction of the previous step's k-th score (all non-zero ones when that
    /// was zero). When k or more are gathered, every other entry scores below the k-th largest
    /// candidate, so the exact top k are chosen from the candidates alone, a pool several times smaller
    /// than the feature map; otherwise from every positive score, gathered again.
    /// </summary>
    private static void PerChannelTask(void* args, int u, int worker)
    {
        ref Job job = ref Unsafe.AsRef<Job>(args);
        ref SelectionJob j = ref job.Selection;
        var self = j.Scratch;
        var policy = job.Policy;
        int poolSize = j.N * j.Plane;
        var scores = self.Scores[worker].AsSpan(0, poolSize);
        var chosen = self.Chosen[worker].AsSpan();
        float previousKth = policy._previousKthScore[u];
        float floorFraction = policy._floorFraction[u];
        long nonZero = 0;
        int count;
        float kth;
        fixed (float* candidateScores = self.CandidateScores[worker])
        fixed (int* candidateIndices = self.CandidateIndices[worker])
        {
            var candidates = new Candidates
            {
                Indices = candidateIndices, Scores = candidateScores,
                FloorBits = Math.Max(1, BitConverter.SingleToInt32Bits(floorFraction * previousKth)),
            };
            for (int n = 0; n < j.N; n++)
            {
                long offset = ((long)n * j.Units + u) * j.Plane;
                nint next = n + 1 < j.N ? (nint)j.Units * j.Plane : (nint)j.Plane - (nint)(j.N - 1) * j.Units * j.Plane;
                nonZero += ScoreRow(j.Dy + offset, j.UseRunning ? j.Running + offset : null, null, j.Plane, j.Decay, &candidates, n * j.Plane, next);
            }
            if (previousKth != 0)
            {
                if (candidates.Count < j.K) floorFraction = Math.Max(MinFloorFraction, floorFraction * 0.85f);
                else if (candidates.Count > 2 * j.K) floorFraction = Math.Min(MaxFloorFraction, floorFraction * 1.02f);
                policy._floorFraction[u] = floorFraction;
            }
            if (candidates.Count < j.K && previousKth != 0 && j.K < poolSize)
            {
                // Fewer than k reached the floor (often: a feature map with fewer than k non-zero
                // entries one step, more the next). Every positive score is gathered again, from the
                // rows just scored (still in cache; the running averages are read, not updated, here),
                // instead of ranking the whole pool (~13 us for 7,840: a 28 x 28 map over a batch of 10).
                candidates.Count = 0;
                candidates.FloorBits = 1;
                for (int n = 0; n < j.N; n++)
                {
                    long offset = ((long)n * j.Units + u) * j.Plane;
                    nint next = n + 1 < j.N ? (nint)j.Units * j.Plane : 0;
                    ScoreRow((j.UseRunning ? j.Running : j.Dy) + offset, null, null, j.Plane, 0, &candidates, n * j.Plane, next);
                }
            }
            if (candidates.Count >= j.K && j.K < poolSize)
            {
                count = TopKSelection.Select(new ReadOnlySpan<float>(candidateScores, candidates.Count), j.K, chosen, out kth,
                    labels: new ReadOnlySpan<int>(candidateIndices, candidates.Count));
            }
            else if (j.K < poolSize)
            {
                // Fewer than k candidates on a zero floor: they are every positive score, so the rest of
                // the k are the lowest-index zeros.
                count = TopKSelection.MergeNonZeroWithFirstZeros(new ReadOnlySpan<int>(candidateIndices, candidates.Count), j.K - candidates.Count, chosen);
                kth = 0;
            }
            else
            {
                // k covers the whole pool: every entry is kept, ranked as the scores stand.
                for (int n = 0; n < j.N; n++)
                {
                    long offset = ((long)n * j.Units + u) * j.Plane;
                    var row = new ReadOnlySpan<float>((j.UseRunning ? j.Running : j.Dy) + offset, j.Plane);
                    if (j.UseRunning) row.CopyTo(scores.Slice(n * j.Plane, j.Plane));
                    else System.Numerics.Tensors.TensorPrimitives.Abs(row, scores.Slice(n * j.Plane, j.Plane));
                }
                count = TopKSelection.Select(scores, j.K, chosen, out kth);
            }
        }
        self.NonZeroByUnit[u] = nonZero;
        policy._previousKthScore[u] = kth;
        self.Store(ref j, u, 0, chosen[..count], positionBase: 0);
    }
}
