using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MeProp.Sparsity;

/// <summary>
/// The scorer the selection policies share. The score of an entry of dL/dy is |dy|, or, with decay, the
/// running average of paper eq. 15, run = decay·run + (1-decay)·|dy|, updated as it is read; tiny
/// averages are flushed to zero. <see cref="Score"/> scores one entry; <see cref="ScoreRow"/> a row with
/// SIMD, counting its non-zeros and gathering the entries above a floor as candidates on the way.
/// </summary>
internal static unsafe class GradientScorer
{
    /// <summary>Score of entry i of dy (updating the running average first when there is one).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Score(ref SelectionJob j, long i)
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
    internal const float Tiny = 1e-30f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float FlushTiny(float value) => value >= Tiny ? value : 0f;

    /// <summary>
    /// Candidates of a selection gathered while scoring: entries whose score is at least a floor. Indices and
    /// Scores hold room for every entry a row can add plus 16: whole vectors are stored past the count.
    /// </summary>
    internal struct Candidates
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
    /// (the row scored next) are prefetched: a feature map's rows are short runs (3 KB for 28 x 28, 784
    /// bytes for 14 x 14) a batch slot apart, mostly coming from L3, too short for the hardware prefetcher
    /// (selection with decay 0.6 at batch 10: 32 maps of 28 x 28 232-240 -> 208 us, 64 maps of 14 x 14
    /// 142-157 -> 126 us).
    /// </summary>
    internal static long ScoreRow(float* dy, float* running, float* scores, int length, float decay, Candidates* candidates, int indexBase, nint next)
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
                    // The lanes already done hold this step's average: they keep it, in the average and
                    // in the scores (updating them again would apply the decay twice).
                    var old = Vector512.Load(running + start);
                    magnitude = Vector512.FusedMultiplyAdd(vDecay, old, vKeep * magnitude);
                    magnitude = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, vTiny), magnitude, Vector512<float>.Zero);
                    magnitude = Vector512.ConditionalSelect(fresh.AsSingle(), magnitude, old);
                    Vector512.Store(magnitude, running + start);
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
}
