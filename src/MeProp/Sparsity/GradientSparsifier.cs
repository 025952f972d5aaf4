using System.Runtime.CompilerServices;
using System.Numerics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MeProp.Kernels;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Sparsity;

/// <summary>Counts of one layer's gradient entries since the last reset: the paper's sparsity statistics.</summary>
public struct SparsityCounters
{
    /// <summary>Entries of dL/dy seen.</summary>
    public long Total;
    /// <summary>Entries of dL/dy that were not zero before selection.</summary>
    public long NonZero;
    /// <summary>Entries kept by the selection.</summary>
    public long Kept;

    public readonly double DensityBefore => Total == 0 ? 0 : (double)NonZero / Total;

    /// <summary>Counts a dense gradient: every entry is kept.</summary>
    public void Add(ReadOnlySpan<float> gradient)
    {
        Total += gradient.Length;
        Kept += gradient.Length;
        NonZero += CountNonZero(gradient);
    }

    internal static long CountNonZero(ReadOnlySpan<float> values)
    {
        long count = 0;
        foreach (float v in values) if (v != 0) count++;
        return count;
    }
    public readonly double KeptFraction => Total == 0 ? 0 : (double)Kept / Total;
}

/// <summary>
/// Turns a layer's dense dL/dy into a <see cref="SparseGradient"/> by meProp selection.
/// Legend: dy is [N, U, P] (U output units: conv channels or linear outputs; P positions per example:
/// OH·OW for conv, 1 for linear). Pools by policy: per-channel, one pool per unit over N·P entries;
/// per-example-channel, one per (n, u) over P; per-example, one per n over U (linear); unified, one
/// over U scored by the sum over the batch (linear); random, the layer's default pools with uniform
/// choice. Scores are |dy|, or with decay the running average run = decay·run + (1-decay)·|dy|,
/// shaped like dy (Full, one slot per batch position) or [U, P] averaged over the batch
/// (ChannelPosition: positions chosen per unit are then kept for every example). Kept values are
/// always the current dy. Work is split over units, each taken by the next free worker; per-worker
/// scratch is grown once and reused.
/// </summary>
public sealed unsafe class GradientSparsifier
{
    private readonly string _layerName;
    private readonly bool _convolutional;
    private readonly Tensor _running = new(0);
    private readonly Rng _rng;
    private float[][] _scores = [];
    private int[][] _chosen = [];
    private int[][] _candidateIndices = [];
    private float[][] _candidateScores = [];
    private long[] _nonZeroByUnit = [];
    private long[] _selectedByUnit = [];
    private float[] _unitScores = [];
    /// <summary>
    /// Per unit, the k-th largest score of the previous per-channel selection. Only a hint for where
    /// to cut the next step's candidates (scores change little from step to step, and not at all in
    /// order of magnitude): the selection is exact whatever it holds, so it is not checkpointed.
    /// </summary>
    private float[] _previousKthScore = [];
    /// <summary>
    /// Per unit, the fraction of the previous k-th score where candidates are cut (0.7 to start): lowered
    /// after a step with fewer than k candidates, which makes the selection gather again (with decay
    /// 0.6, 21% of conv2's maps at a fixed 0.7, 1-2% adjusted), raised slowly after one with more than
    /// 2k (ranking costs in proportion to them). A hint only, like the k-th score: the selection is
    /// exact whatever it holds.
    /// </summary>
    private float[] _floorFraction = [];

    public GradientSparsifier(string layerName, MePropOptions options, bool convolutional, ulong seed)
    {
        options.Validate();
        bool linearPolicy = options.Selection is SelectionPolicy.PerExample or SelectionPolicy.Unified;
        if (convolutional && linearPolicy)
            throw new ArgumentException($"{layerName}: selection '{options.Selection}' is for linear layers; a convolution takes per-channel, per-example-channel or random");
        if (!convolutional && options.Selection == SelectionPolicy.PerExampleChannel)
            throw new ArgumentException($"{layerName}: selection 'per-example-channel' is for convolutions; a linear layer takes per-example, unified, per-channel or random");
        _layerName = layerName;
        _convolutional = convolutional;
        Options = options;
        _rng = Rng.ForStream(seed, 0x6D65_7072);
    }

    public MePropOptions Options { get; }
    public SparseGradient Result { get; } = new();
    public SparsityCounters Counters;

    /// <summary>The running gradient (empty until the first step with decay &gt; 0).</summary>
    public Tensor RunningGradient => _running;
    public Rng Rng => _rng;

    /// <summary>Checkpoint tensors of the layer named <paramref name="layer"/>: its running gradient, when it keeps one.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> StateTensors(string layer) =>
        Options.Decay > 0 ? [(layer + ".meprop.running_grad", _running)] : [];

    /// <summary>Checkpoint metadata: the random-k generator's state.</summary>
    public IEnumerable<(string Key, string Value)> StateMetadata(string layer) =>
        [(layer + ".meprop.rng", string.Join(",", _rng.GetState()))];

    public void RestoreMetadata(string layer, IReadOnlyDictionary<string, string> metadata)
    {
        if (metadata.TryGetValue(layer + ".meprop.rng", out var text))
            _rng.SetState(text.Split(',').Select(ulong.Parse).ToArray());
    }

    private struct Job
    {
        public float* Dy, Running;
        public int N, Units, Plane, K, Capacity;
        public float Decay;
        public bool UseRunning;
        public GradientSparsifier Self;
    }

    /// <summary>Selects the kept entries of dy [N, U, P]; the result stays valid until the next call.</summary>
    public SparseGradient Sparsify(ReadOnlySpan<float> dy, int n, int units, int plane, WorkerPool pool)
    {
        if (dy.Length < n * units * plane) throw new ArgumentException($"{_layerName}: gradient span too short");
        bool decay = Options.Decay > 0;
        bool channelPosition = decay && Options.DecayShape == DecayShape.ChannelPosition;
        if (decay) PrepareRunning(n, units, plane, channelPosition);
        EnsureScratch(pool.ThreadCount, n * Math.Max(units, plane), units);
        Array.Clear(_selectedByUnit, 0, units);
        var policy = Options.Selection;
        if (policy == SelectionPolicy.Random) policy = _convolutional ? SelectionPolicy.PerChannel : SelectionPolicy.PerExample;

        bool countedPerUnit = false;
        fixed (float* pdy = dy, prun = _running.Span)
        {
            var job = new Job
            {
                Dy = pdy, Running = prun, N = n, Units = units, Plane = plane,
                Decay = (float)Options.Decay, UseRunning = decay, Self = this,
            };
            if (Options.Selection == SelectionPolicy.Random)
            {
                // The baseline draws from one generator in a fixed order, so it runs on this thread.
                job.K = policy == SelectionPolicy.PerChannel ? Options.KeepCount(n * plane) : Options.KeepCount(units);
                SelectRandom(ref job, policy);
            }
            else if (channelPosition && _convolutional)
            {
                job.K = Options.KeepCount(plane);
                job.Capacity = n * job.K;
                Result.Reset(units, n * plane, job.Capacity);
                RunUnits(pool, units, &ChannelPositionTask, ref job);
                countedPerUnit = true;
            }
            else if (channelPosition)
            {
                // A linear layer has one position per example: the batch-averaged running gradient
                // scores the units, and the chosen units are kept for every example.
                SelectUnified(ref job, batchAveragedRunning: true);
            }
            else if (policy == SelectionPolicy.PerChannel)
            {
                job.K = Options.KeepCount(n * plane);
                job.Capacity = job.K;
                Result.Reset(units, n * plane, job.Capacity);
                RunUnits(pool, units, &PerChannelTask, ref job);
                countedPerUnit = true;
            }
            else if (policy == SelectionPolicy.PerExampleChannel)
            {
                job.K = Options.KeepCount(plane);
                job.Capacity = n * job.K;
                Result.Reset(units, n * plane, job.Capacity);
                RunUnits(pool, units, &PerExampleChannelTask, ref job);
                countedPerUnit = true;
            }
            else if (policy == SelectionPolicy.PerExample) SelectPerExample(ref job);
            else SelectUnified(ref job, batchAveragedRunning: false);
        }
        long nonZero = 0, selected = 0;
        if (countedPerUnit) for (int u = 0; u < units; u++) nonZero += _nonZeroByUnit[u];
        else nonZero = SparsityCounters.CountNonZero(dy[..(n * units * plane)]);
        for (int u = 0; u < units; u++) selected += _selectedByUnit[u];
        Result.Selected = selected;
        Counters.Total += (long)n * units * plane;
        Counters.NonZero += nonZero;
        Counters.Kept += selected;
        return Result;
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
    /// Runs body(job, u, worker) for every unit, UnitsPerTask consecutive units a task. Neighbouring units'
    /// rows of dy and of the running average share cache lines at their ends (a conv2 row is 196 floats,
    /// not a whole number of lines): units taken one by one in turn by the two workers made both write
    /// those lines and pass them back and forth; grouped, only a group's edges are shared.
    /// </summary>
    private static void RunUnits(WorkerPool pool, int units, delegate*<void*, int, int, void> body, ref Job job)
    {
        fixed (Job* pJob = &job)
        {
            var group = new UnitsJob { Body = body, Job = pJob, Units = units };
            pool.RunDynamic((units + UnitsPerTask - 1) / UnitsPerTask, &UnitGroupTask, &group);
        }
    }

    private static void UnitGroupTask(void* args, int task, int worker)
    {
        var group = (UnitsJob*)args;
        int end = Math.Min(group->Units, (task + 1) * UnitsPerTask);
        for (int u = task * UnitsPerTask; u < end; u++) group->Body(group->Job, u, worker);
    }

    private void PrepareRunning(int n, int units, int plane, bool channelPosition)
    {
        if (channelPosition)
        {
            if (!_running.SameShape([units, plane])) _running.Reshape(units, plane).Clear();
            return;
        }
        // Full shape: one slot per batch position. A smaller last batch uses the first n slots and leaves
        // the others as they are; a larger batch grows the state, new slots starting from zero.
        if (_running.Rank == 3 && _running.Dim(1) == units && _running.Dim(2) == plane && _running.Dim(0) >= n) return;
        var old = _running.Rank == 3 && _running.Dim(1) == units && _running.Dim(2) == plane ? _running.Span.ToArray() : [];
        _running.Reshape(n, units, plane).Clear();
        old.CopyTo(_running.Span);
    }

    private void EnsureScratch(int workers, int poolLength, int units)
    {
        // Each worker needs poolLength scores, chosen indices and candidates (indices and scores).
        if (_scores.Length < workers || _chosen[0].Length < poolLength)
        {
            _scores = new float[workers][];
            _chosen = new int[workers][];
            _candidateIndices = new int[workers][];
            _candidateScores = new float[workers][];
            for (int w = 0; w < workers; w++)
            {
                _scores[w] = new float[poolLength];
                _chosen[w] = new int[poolLength];
                _candidateIndices[w] = new int[poolLength + Vector512<int>.Count];
                _candidateScores[w] = new float[poolLength + Vector512<float>.Count];
            }
        }
        if (_nonZeroByUnit.Length < units)
        {
            _nonZeroByUnit = new long[units];
            _selectedByUnit = new long[units];
            _previousKthScore = new float[units];
            _floorFraction = new float[units];
            Array.Fill(_floorFraction, InitialFloorFraction);
        }
        if (_unitScores.Length < units) _unitScores = new float[units];
    }

    /// <summary>Score of entry i of dy (updating the running average first when there is one).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Score(ref Job j, long i)
    {
        float magnitude = MathF.Abs(j.Dy[i]);
        if (!j.UseRunning) return magnitude;
        float r = FlushTiny(MathF.FusedMultiplyAdd(j.Decay, j.Running[i], (1 - j.Decay) * magnitude));
        j.Running[i] = r;
        return r;
    }

    /// <summary>
    /// Running averages below this are stored as zero. A position whose gradient stays zero decays
    /// geometrically (0.6^t) into subnormal floats within a few hundred steps, and arithmetic on
    /// subnormals is about a hundred times slower on x86; scores this small only ever tie with zeros.
    /// </summary>
    private const float Tiny = 1e-30f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float FlushTiny(float value) => value >= Tiny ? value : 0f;

    /// <summary>Bounds and start of a unit's candidate floor, as a fraction of its previous k-th score.</summary>
    private const float InitialFloorFraction = 0.7f, MinFloorFraction = 0.25f, MaxFloorFraction = 0.97f;

    /// <summary>Candidates of a selection gathered while scoring: entries whose score is at least a floor.</summary>
    private struct Candidates
    {
        public int* Indices;
        public float* Scores;
        public int Count;
        /// <summary>Bit pattern of the floor, at least 1: zero scores are never candidates.</summary>
        public int FloorBits;
    }

    /// <summary>
    /// scores[i] = |dy[i]|, or with a running gradient run[i] = decay·run[i] + (1-decay)·|dy[i]| and
    /// scores[i] = run[i] (scores may be null: not stored); returns how many dy[i] are non-zero. With <paramref name="candidates"/>, every
    /// i whose score reaches the floor is appended as (indexBase + i, score), in index order. Scores are
    /// non-negative, so comparing their bit patterns as integers orders them like the floats (and stays
    /// clear of the slow subnormal float paths). SIMD, as it touches every entry of dL/dy. When
    /// <paramref name="next"/> is not zero, the rows of dy and of the running average that far ahead
    /// (the row scored next) are prefetched: a feature map's rows are short runs (3 KB for conv1,
    /// 784 bytes for conv2) a batch slot apart, mostly coming from L3, too short for the hardware
    /// prefetcher (selection with decay 0.6 at batch 10: conv1 232-240 -> 208 us, conv2 142-157 -> 126 us).
    /// </summary>
    private static long ScoreRow(float* dy, float* running, float* scores, int length, float decay, Candidates* candidates, int indexBase, nint next)
    {
        long nonZero = 0;
        int i = 0;
        float keep = 1 - decay;
        // Locals, not fields through the pointer: stores through the candidate buffers could alias the
        // struct, so the JIT would reload the count and the buffer addresses on every vector.
        int* candidateIndices = candidates != null ? candidates->Indices : null;
        float* candidateScores = candidates != null ? candidates->Scores : null;
        int count = candidates != null ? candidates->Count : 0;
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
        {
            var vDecay = Vector512.Create(decay);
            var vKeep = Vector512.Create(keep);
            var vTiny = Vector512.Create(Tiny);
            var vFloor = Vector512.Create(candidates != null ? candidates->FloorBits : 0);
            var index = Vector512.Create(indexBase) + Vector512<int>.Indices;
            var vectorLength = Vector512.Create(Vector512<int>.Count);
            // A lane counts a non-zero dy as min(bit pattern of |dy|, 1): integer ops, where a float
            // compare would queue on the port that the other compares and the compresses need.
            var nonZeroLanes = Vector512<uint>.Zero;
            for (; i + 16 <= length; i += 16, index += vectorLength)
            {
                if (next != 0)
                {
                    Sse.Prefetch0(dy + next + i);
                    if (running != null) Sse.Prefetch0(running + next + i);
                }
                var magnitude = Vector512.Abs(Vector512.Load(dy + i));
                nonZeroLanes += Vector512.Min(magnitude.AsUInt32(), Vector512<uint>.One);
                if (running != null)
                {
                    magnitude = Vector512.FusedMultiplyAdd(vDecay, Vector512.Load(running + i), vKeep * magnitude);
                    magnitude = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, vTiny), magnitude, Vector512<float>.Zero);
                    Vector512.Store(magnitude, running + i);
                }
                if (scores != null) Vector512.Store(magnitude, scores + i);
                if (candidates != null)
                {
                    // Compressed in registers and stored whole: the buffers have a vector of slack, and
                    // the lanes past the count are overwritten by the next store.
                    var isCandidate = Vector512.GreaterThanOrEqual(magnitude.AsInt32(), vFloor);
                    Vector512.Store(Avx512F.Compress(Vector512<int>.Zero, isCandidate, index), candidateIndices + count);
                    Vector512.Store(Avx512F.Compress(Vector512<float>.Zero, isCandidate.AsSingle(), magnitude), candidateScores + count);
                    count += BitOperations.PopCount(isCandidate.ExtractMostSignificantBits());
                }
            }
            if (i < length && length >= 16)
            {
                // The tail as the row's last vector, of which only the lanes not yet done count: rows
                // are often not a multiple of 16 long (14x14 = 196), and scalar tails cost as much as
                // the vectors.
                int start = length - 16;
                var fresh = Vector512.GreaterThanOrEqual(Vector512<int>.Indices, Vector512.Create(i - start));
                var magnitude = Vector512.Abs(Vector512.Load(dy + start));
                nonZeroLanes += Vector512.Min(magnitude.AsUInt32(), Vector512<uint>.One) & fresh.AsUInt32();
                if (running != null)
                {
                    var old = Vector512.Load(running + start);
                    magnitude = Vector512.FusedMultiplyAdd(vDecay, old, vKeep * magnitude);
                    magnitude = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, vTiny), magnitude, Vector512<float>.Zero);
                    Vector512.Store(Vector512.ConditionalSelect(fresh.AsSingle(), magnitude, old), running + start);
                }
                if (scores != null) Vector512.Store(magnitude, scores + start);
                if (candidates != null)
                {
                    var isCandidate = Vector512.GreaterThanOrEqual(magnitude.AsInt32(), vFloor) & fresh;
                    var tailIndex = Vector512.Create(indexBase + start) + Vector512<int>.Indices;
                    Vector512.Store(Avx512F.Compress(Vector512<int>.Zero, isCandidate, tailIndex), candidateIndices + count);
                    Vector512.Store(Avx512F.Compress(Vector512<float>.Zero, isCandidate.AsSingle(), magnitude), candidateScores + count);
                    count += BitOperations.PopCount(isCandidate.ExtractMostSignificantBits());
                }
                i = length;
            }
            nonZero = Vector512.Sum(nonZeroLanes);
        }
        for (; i < length; i++)
        {
            float v = dy[i];
            if (v != 0) nonZero++;
            float magnitude = MathF.Abs(v);
            if (running != null)
            {
                magnitude = FlushTiny(MathF.FusedMultiplyAdd(decay, running[i], keep * magnitude));
                running[i] = magnitude;
            }
            if (scores != null) scores[i] = magnitude;
            if (candidates != null && BitConverter.SingleToInt32Bits(magnitude) >= candidates->FloorBits)
            {
                candidateIndices[count] = indexBase + i;
                candidateScores[count++] = magnitude;
            }
        }
        if (candidates != null) candidates->Count = count;
        return nonZero;
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
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var self = j.Self;
        int poolSize = j.N * j.Plane;
        var scores = self._scores[worker].AsSpan(0, poolSize);
        var chosen = self._chosen[worker].AsSpan();
        float previousKth = self._previousKthScore[u];
        float floorFraction = self._floorFraction[u];
        long nonZero = 0;
        int count;
        float kth;
        fixed (float* candidateScores = self._candidateScores[worker])
        fixed (int* candidateIndices = self._candidateIndices[worker])
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
                self._floorFraction[u] = floorFraction;
            }
            if (candidates.Count < j.K && previousKth != 0 && j.K < poolSize)
            {
                // Fewer than k reached the floor (often: a feature map with fewer than k non-zero
                // entries one step, more the next). Every positive score is gathered again, from the
                // rows just scored (still in cache; the running averages are read, not updated, here),
                // instead of ranking the whole pool (~13 us for conv1's 7,840).
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
        self._nonZeroByUnit[u] = nonZero;
        self._previousKthScore[u] = kth;
        self.Store(ref j, u, 0, chosen[..count], positionBase: 0);
    }

    private static void PerExampleChannelTask(void* args, int u, int worker)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var self = j.Self;
        var scores = self._scores[worker].AsSpan(0, j.Plane);
        var chosen = self._chosen[worker].AsSpan();
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
        self._nonZeroByUnit[u] = nonZero;
    }

    private static void ChannelPositionTask(void* args, int u, int worker)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        var self = j.Self;
        var scores = self._scores[worker].AsSpan(0, j.Plane);
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
        self._nonZeroByUnit[u] = nonZero;
        var chosen = self._chosen[worker].AsSpan();
        int count = TopKSelection.Select(scores, j.K, chosen);
        int slot = 0;
        for (int n = 0; n < j.N; n++) slot = self.Store(ref j, u, slot, chosen[..count], positionBase: n * j.Plane);
    }

    /// <summary>
    /// Appends the chosen plane positions (relative to <paramref name="positionBase"/>) of unit u whose
    /// dy is non-zero, counts all of them as selected; returns the next slot. A chosen position p of the
    /// pool is example n = p / P, at dy[(n·U + u)·P + p - n·P].
    /// </summary>
    private int Store(ref Job j, int u, int slot, ReadOnlySpan<int> chosen, int positionBase)
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
                // The scalar loop below took 1.8-2.0 us for a conv1 map's 392 entries, this 1.0-1.1 us.
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
        _selectedByUnit[u] += chosen.Length;
        return slot;
    }

    /// <summary>Linear, per example: each row of dy [N, U] keeps its top k; entries regrouped by unit.</summary>
    private void SelectPerExample(ref Job j)
    {
        int k = Options.KeepCount(j.Units);
        Result.Reset(j.Units, j.N, j.N);
        var scores = _scores[0].AsSpan(0, j.Units);
        var chosen = _chosen[0].AsSpan();
        for (int n = 0; n < j.N; n++)
        {
            long offset = (long)n * j.Units;
            for (int u = 0; u < j.Units; u++) scores[u] = Score(ref j, offset + u);
            int count = TopKSelection.Select(scores, k, chosen);
            AppendRow(ref j, n, chosen[..count]);
        }
    }

    /// <summary>Linear, unified: one set of k units for the batch; kept for every example.</summary>
    private void SelectUnified(ref Job j, bool batchAveragedRunning)
    {
        int k = Options.KeepCount(j.Units);
        Result.Reset(j.Units, j.N, j.N);
        var scores = _unitScores.AsSpan(0, j.Units);
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
        var chosen = _chosen[0].AsSpan();
        int count = TopKSelection.Select(scores, k, chosen);
        for (int n = 0; n < j.N; n++) AppendRow(ref j, n, chosen[..count]);
    }

    /// <summary>Appends example n's chosen units whose dy is non-zero; counts all of them as selected.</summary>
    private void AppendRow(ref Job j, int n, ReadOnlySpan<int> units)
    {
        foreach (int u in units)
        {
            _selectedByUnit[u]++;
            float value = j.Dy[(long)n * j.Units + u];
            if (value == 0) continue;
            int slot = u * Result.Capacity + Result.Counts[u]++;
            Result.Positions[slot] = n;
            Result.Values[slot] = value;
        }
    }

    /// <summary>The random-k baseline: k uniform positions per pool (partial Fisher-Yates), sorted.</summary>
    private void SelectRandom(ref Job j, SelectionPolicy pools)
    {
        var order = _chosen[0];
        if (pools == SelectionPolicy.PerChannel)
        {
            int poolSize = j.N * j.Plane;
            j.Capacity = j.K;
            Result.Reset(j.Units, poolSize, j.K);
            for (int u = 0; u < j.Units; u++)
            {
                var picked = DrawSorted(order.AsSpan(0, poolSize), j.K);
                Store(ref j, u, 0, picked, positionBase: 0);
            }
        }
        else
        {
            Result.Reset(j.Units, j.N, j.N);
            for (int n = 0; n < j.N; n++) AppendRow(ref j, n, DrawSorted(order.AsSpan(0, j.Units), j.K));
        }
    }

    private Span<int> DrawSorted(Span<int> order, int k)
    {
        for (int i = 0; i < order.Length; i++) order[i] = i;
        for (int i = 0; i < k; i++)
        {
            int r = i + _rng.NextInt(order.Length - i);
            (order[i], order[r]) = (order[r], order[i]);
        }
        var picked = order[..k];
        picked.Sort();
        return picked;
    }
}
