using System.Numerics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MeProp.Kernels;
using MeProp.Threading;

namespace MeProp.Sparsity;

/// <summary>
/// What the selection policies write into and work in, one per layer: the <see cref="Result"/>, per-unit
/// counts, and per-worker scratch (grown once, then reused); and the steps the policies share: running
/// a task per unit on the pool, and storing a unit's or an example's chosen entries.
/// </summary>
internal sealed unsafe class SelectionScratch
{
    /// <summary>Per worker: scores of a pool, chosen indices, and candidates (indices and scores, with a vector of slack).</summary>
    public float[][] Scores = [];
    public int[][] Chosen = [];
    public int[][] CandidateIndices = [];
    public float[][] CandidateScores = [];
    /// <summary>Per unit: non-zero entries of dy (for policies that count them while scoring), and entries chosen.</summary>
    public long[] NonZeroByUnit = [];
    public long[] SelectedByUnit = [];
    /// <summary>Per unit: one score each (a selection over units).</summary>
    public float[] UnitScores = [];

    public SparseGradient Result { get; } = new();

    /// <summary>Sizes the buffers for <paramref name="workers"/> workers, pools of up to <paramref name="poolLength"/> entries and <paramref name="units"/> units.</summary>
    public void Ensure(int workers, int poolLength, int units)
    {
        // Each worker needs poolLength scores, chosen indices and candidates (indices and scores).
        if (Scores.Length < workers || Chosen[0].Length < poolLength)
        {
            Scores = new float[workers][];
            Chosen = new int[workers][];
            CandidateIndices = new int[workers][];
            CandidateScores = new float[workers][];
            for (int w = 0; w < workers; w++)
            {
                Scores[w] = new float[poolLength];
                Chosen[w] = new int[poolLength];
                CandidateIndices[w] = new int[poolLength + Vector512<int>.Count];
                CandidateScores[w] = new float[poolLength + Vector512<float>.Count];
            }
        }
        if (NonZeroByUnit.Length < units)
        {
            NonZeroByUnit = new long[units];
            SelectedByUnit = new long[units];
        }
        if (UnitScores.Length < units) UnitScores = new float[units];
    }

    /// <summary>Σ NonZeroByUnit over the first <paramref name="units"/> units.</summary>
    public long SumNonZeroByUnit(int units)
    {
        long nonZero = 0;
        for (int u = 0; u < units; u++) nonZero += NonZeroByUnit[u];
        return nonZero;
    }

    /// <summary>Consecutive units one task takes.</summary>
    private const int UnitsPerTask = 4;

    private struct UnitsJob
    {
        public delegate*<void*, int, int, void> Body;
        public void* Job;
        public int Units;
    }

    /// <summary>
    /// Runs body(job, u, worker) for every unit of a layer's dy, UnitsPerTask consecutive units a task.
    /// Neighbouring units' rows of dy and of the running average share cache lines at their ends (a
    /// 14 x 14 map's row is 196 floats, not a whole number of lines): units taken one by one in turn by the two workers made both write
    /// those lines and pass them back and forth; grouped, only a group's edges are shared.
    /// </summary>
    public static void RunUnits(WorkerPool pool, int units, delegate*<void*, int, int, void> body, void* job)
    {
        var group = new UnitsJob { Body = body, Job = job, Units = units };
        pool.RunDynamic((units + UnitsPerTask - 1) / UnitsPerTask, &UnitGroupTask, &group);
    }

    private static void UnitGroupTask(void* args, int task, int worker)
    {
        var group = (UnitsJob*)args;
        int end = Math.Min(group->Units, (task + 1) * UnitsPerTask);
        for (int u = task * UnitsPerTask; u < end; u++) group->Body(group->Job, u, worker);
    }

    /// <summary>
    /// Appends the chosen plane positions (relative to <paramref name="positionBase"/>) of unit u whose
    /// dy is non-zero, counts all of them as selected; returns the next slot. A chosen position p of the
    /// pool is example n = p / P, at dy[(n·U + u)·P + p - n·P].
    /// </summary>
    public int Store(ref SelectionJob j, int u, int slot, ReadOnlySpan<int> chosen, int positionBase)
    {
        int plane = j.Plane;
        float* dy = j.Dy + (long)u * plane;
        int rowStep = (j.Units - 1) * plane;
        int t = 0;
        fixed (int* chosenStart = chosen, positionStart = Result.Positions)
        fixed (float* valueStart = Result.Values)
        {
            int* positions = positionStart + (long)u * j.Capacity;
            float* values = valueStart + (long)u * j.Capacity;
            if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported && Avx2.IsSupported && (long)j.N * plane <= FloatQuotient.MaxDividend)
            {
                // Sixteen at a time, the non-zero values compressed in registers and stored whole: the
                // store reaches at most 16 slots past this unit's next slot, and while 16 chosen positions
                // remain those slots are still this unit's (its capacity is at least the chosen count).
                // The scalar loop below took 1.8-2.0 us for 392 entries (5% of a 28 x 28 map over a batch
                // of 10), this 1.0-1.1 us.
                var vBase = Vector512.Create(positionBase);
                var vPlane = Vector512.Create(plane);
                var vInversePlane = Vector512.Create(1f / plane);
                var vRowStep = Vector512.Create(rowStep);
                for (; t + 16 <= chosen.Length; t += 16)
                {
                    var position = vBase + Vector512.Load(chosenStart + t);
                    var n = FloatQuotient.Divide(position, vPlane, vInversePlane);
                    var offset = position + n * vRowStep;
                    var value = Vector512.Create(
                        Avx2.GatherVector256(dy, offset.GetLower(), sizeof(float)),
                        Avx2.GatherVector256(dy, offset.GetUpper(), sizeof(float)));
                    var keep = ~Vector512.Equals(value, Vector512<float>.Zero);
                    Vector512.Store(Avx512F.Compress(Vector512<int>.Zero, keep.AsInt32(), position), positions + slot);
                    Vector512.Store(Avx512F.Compress(Vector512<float>.Zero, keep, value), values + slot);
                    slot += BitOperations.PopCount(keep.ExtractMostSignificantBits());
                }
            }
            if (t < chosen.Length)
            {
                // Positions ascend, so the example n (and the offset of its row of dy) only moves forward.
                int n = (positionBase + chosenStart[t]) / plane;
                long rowOffset = (long)n * rowStep;
                for (; t < chosen.Length; t++)
                {
                    int position = positionBase + chosenStart[t];
                    while (position >= (n + 1) * plane)
                    {
                        n++;
                        rowOffset += rowStep;
                    }
                    // Written always, kept by advancing the slot only for a non-zero value: whether a kept
                    // gradient entry is zero is unpredictable, and a branch on it mispredicts often.
                    float value = dy[rowOffset + position];
                    positions[slot] = position;
                    values[slot] = value;
                    slot += value != 0 ? 1 : 0;
                }
            }
        }
        Result.Counts[u] = slot;
        SelectedByUnit[u] += chosen.Length;
        return slot;
    }

    /// <summary>Appends example n's chosen units whose dy is non-zero; counts all of them as selected.</summary>
    public void AppendRow(ref SelectionJob j, int n, ReadOnlySpan<int> units)
    {
        foreach (int u in units)
        {
            SelectedByUnit[u]++;
            float value = j.Dy[(long)n * j.Units + u];
            if (value == 0) continue;
            int slot = u * Result.Capacity + Result.Counts[u]++;
            Result.Positions[slot] = n;
            Result.Values[slot] = value;
        }
    }
}
