using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MeProp.Kernels;

/// <summary>
/// Chooses the k largest scores of a pool in O(n) without sorting. Scores are magnitudes (non-negative,
/// not NaN), so their bit patterns order like the floats and the k-th largest is found by searching the
/// bit pattern (interpolation, safeguarded by bisection): each step counts the scores at or above a
/// guess with SIMD compares, a pass over the pool without memory dependencies (histogram-based radix
/// selection, scattering increments over a table, ran several times slower on Intel cores). Once at most <see cref="FinalBracket"/> scores lie
/// between the bounds, those few are sorted instead. A last pass keeps the scores above the k-th value
/// t and, of those equal to t, the lowest indices first. When fewer than k scores are non-zero (t is
/// zero) all non-zero ones are kept and the lowest-index zeros fill up. Chosen indices come out
/// ascending; with k &gt;= n every index is chosen.
/// </summary>
public static class TopKSelection
{
    /// <summary>Scores between the bisection's bounds below which they are sorted rather than bisected further.</summary>
    private const int FinalBracket = 32;

    /// <summary>Writes the chosen indices (ascending) to <paramref name="chosen"/> and returns how many (min(k, n)).</summary>
    public static int Select(ReadOnlySpan<float> scores, int k, Span<int> chosen) => Select(scores, k, chosen, out _);

    /// <summary>
    /// As <see cref="Select(ReadOnlySpan{float}, int, Span{int})"/>; also gives the smallest chosen score
    /// (the k-th largest; zero when nothing is chosen).
    /// </summary>
    public static int Select(ReadOnlySpan<float> scores, int k, Span<int> chosen, out float kthLargest) =>
        Select(scores, k, chosen, out kthLargest, labels: default);

    /// <summary>
    /// As <see cref="Select(ReadOnlySpan{float}, int, Span{int}, out float)"/>, writing labels[i] for each
    /// chosen index i (in ascending order of i) instead of i, when <paramref name="labels"/> is not empty
    /// (it then holds at least one label per score): a pool gathered from a larger one chooses the larger
    /// pool's positions without a second pass to look them up.
    /// </summary>
    public static int Select(ReadOnlySpan<float> scores, int k, Span<int> chosen, out float kthLargest, ReadOnlySpan<int> labels)
    {
        int n = scores.Length;
        kthLargest = 0;
        if (!labels.IsEmpty && labels.Length < n) throw new ArgumentException("top-k: fewer labels than scores");
        if (k <= 0 || n == 0) return 0;
        if (k >= n)
        {
            kthLargest = float.PositiveInfinity;
            for (int i = 0; i < n; i++)
            {
                chosen[i] = labels.IsEmpty ? i : labels[i];
                kthLargest = MathF.Min(kthLargest, scores[i]);
            }
            return n;
        }
        var bits = MemoryMarshal.Cast<float, int>(scores);
        int nonZero = CountNonZero(bits, out int min, out int max);
        if (nonZero <= k)
        {
            // Every non-zero score is chosen; with exactly k of them, the smallest is the k-th largest.
            if (nonZero == k) kthLargest = BitConverter.Int32BitsToSingle(min);
            return TakeNonZeroAndFirstZeros(bits, k - nonZero, chosen, labels);
        }

        // Invariant: at least k scores are >= lo, fewer than k (countHi) are >= hi. The next guess is
        // interpolated, as if the counts fell evenly from lo to hi, which for a smooth spread of scores
        // takes a few passes instead of the ~25 a bisection of the bit pattern does; a guess that does
        // not halve the scores between the bounds is followed by a plain bisection step. The search
        // starts from the smallest non-zero pattern, not from 1: interpolating over the empty range of
        // patterns below it took 10-12 passes for pools of 136-700 log-uniform scores, now 3-6.
        int lo = min, hi = max + 1, countLo = nonZero, countHi = 0;
        bool bisect = false;
        while (hi - lo > 1 && countLo - countHi > FinalBracket)
        {
            int between = countLo - countHi;
            long offset = bisect ? (hi - lo) / 2 : (long)(hi - lo) * (countLo - k) / between;
            int mid = lo + (int)Math.Clamp(offset, 1, hi - lo - 1);
            int count = CountAtLeast(bits, mid);
            if (count >= k) (lo, countLo) = (mid, count);
            else (hi, countHi) = (mid, count);
            bisect = !bisect && countLo - countHi > between / 2;
        }
        int threshold = lo, above = countHi;
        if (hi - lo > 1) threshold = KthInBracket(bits, lo, hi, k - countHi, ref above);
        kthLargest = BitConverter.Int32BitsToSingle(threshold);
        return Collect(bits, threshold, k - above, chosen, labels);
    }

    /// <summary>How many bit patterns are &gt;= <paramref name="floor"/>.</summary>
    private static int CountAtLeast(ReadOnlySpan<int> bits, int floor)
    {
        int count = 0, i = 0;
        ref int start = ref MemoryMarshal.GetReference(bits);
        if (Vector512.IsHardwareAccelerated)
        {
            // Lanes count by subtracting the all-ones compare masks: no per-vector mask-to-scalar step.
            var f = Vector512.Create(floor);
            Vector512<int> counts = default;
            for (; i + 16 <= bits.Length; i += 16) counts -= Vector512.GreaterThanOrEqual(Vector512.LoadUnsafe(ref start, (nuint)i), f);
            if (i < bits.Length && bits.Length >= 16)
            {
                int last = bits.Length - 16;
                counts -= Vector512.GreaterThanOrEqual(Vector512.LoadUnsafe(ref start, (nuint)last), f) & Fresh512(i - last);
                i = bits.Length;
            }
            count = Vector512.Sum(counts);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var f = Vector256.Create(floor);
            Vector256<int> counts = default;
            for (; i + 8 <= bits.Length; i += 8) counts -= Vector256.GreaterThanOrEqual(Vector256.LoadUnsafe(ref start, (nuint)i), f);
            if (i < bits.Length && bits.Length >= 8)
            {
                int last = bits.Length - 8;
                counts -= Vector256.GreaterThanOrEqual(Vector256.LoadUnsafe(ref start, (nuint)last), f) & Fresh256(i - last);
                i = bits.Length;
            }
            count = Vector256.Sum(counts);
        }
        for (; i < bits.Length; i++) if (bits[i] >= floor) count++;
        return count;
    }

    /// <summary>
    /// How many bit patterns are not zero, the smallest of those (int.MaxValue when none) and the largest
    /// of all: the bounds the search for the k-th largest starts from.
    /// </summary>
    private static int CountNonZero(ReadOnlySpan<int> bits, out int min, out int max)
    {
        int count = 0, i = 0;
        min = int.MaxValue;
        max = 0;
        ref int start = ref MemoryMarshal.GetReference(bits);
        if (Vector512.IsHardwareAccelerated)
        {
            // Zero lanes are raised to int.MaxValue, so they cannot be the smallest.
            var raise = Vector512.Create(int.MaxValue);
            Vector512<int> zeros = default, smallest = raise, largest = default;
            for (; i + 16 <= bits.Length; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref start, (nuint)i);
                var isZero = Vector512.Equals(v, Vector512<int>.Zero);
                zeros -= isZero;
                smallest = Vector512.Min(smallest, v | (isZero & raise));
                largest = Vector512.Max(largest, v);
            }
            if (i < bits.Length && bits.Length >= 16)
            {
                // The last 16 values, of which the first were counted already: they are counted again
                // only as zeros masked out; the minimum and maximum do not mind seeing them twice.
                int last = bits.Length - 16;
                var v = Vector512.LoadUnsafe(ref start, (nuint)last);
                var isZero = Vector512.Equals(v, Vector512<int>.Zero);
                zeros -= isZero & Fresh512(i - last);
                smallest = Vector512.Min(smallest, v | (isZero & raise));
                largest = Vector512.Max(largest, v);
                i = bits.Length;
            }
            count = i - Vector512.Sum(zeros);
            min = MinLane(Vector256.Min(smallest.GetLower(), smallest.GetUpper()));
            max = MaxLane(Vector256.Max(largest.GetLower(), largest.GetUpper()));
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var raise = Vector256.Create(int.MaxValue);
            Vector256<int> zeros = default, smallest = raise, largest = default;
            for (; i + 8 <= bits.Length; i += 8)
            {
                var v = Vector256.LoadUnsafe(ref start, (nuint)i);
                var isZero = Vector256.Equals(v, Vector256<int>.Zero);
                zeros -= isZero;
                smallest = Vector256.Min(smallest, v | (isZero & raise));
                largest = Vector256.Max(largest, v);
            }
            if (i < bits.Length && bits.Length >= 8)
            {
                int last = bits.Length - 8;
                var v = Vector256.LoadUnsafe(ref start, (nuint)last);
                var isZero = Vector256.Equals(v, Vector256<int>.Zero);
                zeros -= isZero & Fresh256(i - last);
                smallest = Vector256.Min(smallest, v | (isZero & raise));
                largest = Vector256.Max(largest, v);
                i = bits.Length;
            }
            count = i - Vector256.Sum(zeros);
            min = MinLane(smallest);
            max = MaxLane(largest);
        }
        for (; i < bits.Length; i++)
        {
            if (bits[i] != 0)
            {
                count++;
                min = Math.Min(min, bits[i]);
            }
            max = Math.Max(max, bits[i]);
        }
        return count;
    }

    private static int MinLane(Vector256<int> v)
    {
        var m = Vector128.Min(v.GetLower(), v.GetUpper());
        return Math.Min(Math.Min(m[0], m[1]), Math.Min(m[2], m[3]));
    }

    private static int MaxLane(Vector256<int> v)
    {
        var m = Vector128.Max(v.GetLower(), v.GetUpper());
        return Math.Max(Math.Max(m[0], m[1]), Math.Max(m[2], m[3]));
    }

    /// <summary>
    /// The <paramref name="rank"/>-th largest (1-based) of the few bit patterns in [lo, hi) (at most
    /// <see cref="FinalBracket"/>); adds to <paramref name="above"/> how many of them are larger than it.
    /// Branch-free where it can be: which vectors hold a member, and how a handful of fresh values
    /// compare, are unpredictable: with a per-member branch and a sort, ranking the ~1,100 candidates of a
    /// 28 x 28 map over a batch of 10 took 1.8-2.2 us, now 1.4-1.6.
    /// </summary>
    private static int KthInBracket(ReadOnlySpan<int> bits, int lo, int hi, int rank, ref int above)
    {
        const int Slack = 16;
        Span<int> members = stackalloc int[FinalBracket + Slack];
        int m = 0, i = 0;
        ref int start = ref MemoryMarshal.GetReference(bits);
        ref int target = ref MemoryMarshal.GetReference(members);
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
        {
            // Compressed in registers and stored whole: at most FinalBracket members, so a store reaches
            // at most Slack slots past them.
            var vLo = Vector512.Create(lo);
            var vHi = Vector512.Create(hi);
            for (; i + 16 <= bits.Length; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref start, (nuint)i);
                var inside = Vector512.GreaterThanOrEqual(v, vLo) & Vector512.LessThan(v, vHi);
                Avx512F.Compress(Vector512<int>.Zero, inside, v).StoreUnsafe(ref target, (nuint)m);
                m += BitOperations.PopCount(inside.ExtractMostSignificantBits());
            }
            if (i < bits.Length && bits.Length >= 16)
            {
                int last = bits.Length - 16;
                var v = Vector512.LoadUnsafe(ref start, (nuint)last);
                var inside = Vector512.GreaterThanOrEqual(v, vLo) & Vector512.LessThan(v, vHi) & Fresh512(i - last);
                Avx512F.Compress(Vector512<int>.Zero, inside, v).StoreUnsafe(ref target, (nuint)m);
                m += BitOperations.PopCount(inside.ExtractMostSignificantBits());
                i = bits.Length;
            }
        }
        for (; i < bits.Length; i++)
            if (bits[i] >= lo && bits[i] < hi) members[m++] = bits[i];
        // The member with fewer than rank members above it and at least rank at or above it. Patterns
        // are positive, so the zeros past m count as neither.
        members[m..].Clear();
        for (int a = 0; a < m; a++)
        {
            int x = members[a], greater = 0, atLeast = 0;
            int b = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                var vx = Vector512.Create(x);
                for (; b < m; b += 16)
                {
                    var v = Vector512.LoadUnsafe(ref target, (nuint)b);
                    greater += BitOperations.PopCount(Vector512.GreaterThan(v, vx).ExtractMostSignificantBits());
                    atLeast += BitOperations.PopCount(Vector512.GreaterThanOrEqual(v, vx).ExtractMostSignificantBits());
                }
            }
            for (; b < m; b++)
            {
                greater += members[b] > x ? 1 : 0;
                atLeast += members[b] >= x ? 1 : 0;
            }
            if (greater < rank && atLeast >= rank)
            {
                above += greater;
                return x;
            }
        }
        throw new InvalidOperationException("top-k: the bracket holds fewer members than the rank sought");
    }

    /// <summary>
    /// Indices (ascending) of every bit pattern above t and of the first <paramref name="ties"/> equal to
    /// t. A vector without a tie to take is compressed in registers and stored whole (the lanes past the
    /// count are overwritten next, and the last 16 slots of <paramref name="chosen"/> are left to the
    /// scalar loop): a branch per kept index cost 44% of a 700-score selection.
    /// </summary>
    private static int Collect(ReadOnlySpan<int> bits, int t, int ties, Span<int> chosen, ReadOnlySpan<int> labels)
    {
        int count = 0, i = 0;
        bool labelled = !labels.IsEmpty;
        ref int start = ref MemoryMarshal.GetReference(bits);
        ref int target = ref MemoryMarshal.GetReference(chosen);
        ref int label = ref MemoryMarshal.GetReference(labels);
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
        {
            var f = Vector512.Create(t);
            for (; i + 16 <= bits.Length && count + 16 <= chosen.Length; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref start, (nuint)i);
                var above = Vector512.GreaterThan(v, f);
                if (ties > 0)
                {
                    ulong equal = Vector512.Equals(v, f).ExtractMostSignificantBits();
                    if (equal != 0)
                    {
                        // A tie with the k-th score in this vector: its lanes in index order, scalar.
                        ulong mask = (above.ExtractMostSignificantBits() | equal);
                        for (; mask != 0; mask &= mask - 1)
                        {
                            int index = i + BitOperations.TrailingZeroCount(mask);
                            if (bits[index] > t || ties-- > 0) chosen[count++] = labelled ? labels[index] : index;
                        }
                        continue;
                    }
                }
                var indices = labelled ? Vector512.LoadUnsafe(ref label, (nuint)i) : Vector512.Create(i) + Vector512<int>.Indices;
                Avx512F.Compress(Vector512<int>.Zero, above, indices).StoreUnsafe(ref target, (nuint)count);
                count += BitOperations.PopCount(above.ExtractMostSignificantBits());
            }
            if (i < bits.Length && i + 16 > bits.Length && bits.Length >= 16)
            {
                // Fewer than 16 left: the last 16 values, of which only the lanes not seen yet count,
                // their chosen lanes one at a time in index order.
                int last = bits.Length - 16;
                var v = Vector512.LoadUnsafe(ref start, (nuint)last);
                ulong mask = Vector512.GreaterThan(v, f).ExtractMostSignificantBits();
                if (ties > 0) mask |= Vector512.Equals(v, f).ExtractMostSignificantBits();
                for (mask &= ulong.MaxValue << (i - last); mask != 0; mask &= mask - 1)
                {
                    int index = last + BitOperations.TrailingZeroCount(mask);
                    if (bits[index] > t || ties-- > 0) chosen[count++] = labelled ? labels[index] : index;
                }
                i = bits.Length;
            }
        }
        for (; i < bits.Length; i++)
            if (bits[i] > t || bits[i] == t && ties-- > 0) chosen[count++] = labelled ? labels[i] : i;
        return count;
    }

    /// <summary>
    /// Lanes from <paramref name="first"/> on set, the ones before clear: of a pool's last vector,
    /// loaded overlapping the one before it (pools are rarely a multiple of 16 long), the lanes not
    /// seen yet. A scalar tail's compare per value went either way at random, and its mispredicted
    /// branches, paid in every pass, were a fifth of the ranking of a 28 x 28 map over a batch of 10.
    /// </summary>
    private static Vector512<int> Fresh512(int first) => Vector512.GreaterThanOrEqual(Vector512<int>.Indices, Vector512.Create(first));

    /// <summary>As <see cref="Fresh512"/> for 8 lanes.</summary>
    private static Vector256<int> Fresh256(int first) => Vector256.GreaterThanOrEqual(Vector256<int>.Indices, Vector256.Create(first));

    /// <summary>Every index of a non-zero score plus the first <paramref name="zeros"/> indices of zero ones, ascending (or their labels).</summary>
    private static int TakeNonZeroAndFirstZeros(ReadOnlySpan<int> bits, int zeros, Span<int> chosen, ReadOnlySpan<int> labels)
    {
        int count = 0;
        for (int i = 0; i < bits.Length; i++)
            if (bits[i] != 0 || zeros-- > 0) chosen[count++] = labels.IsEmpty ? i : labels[i];
        return count;
    }

    /// <summary>
    /// Every non-zero index (ascending) plus the first <paramref name="zeros"/> indices of zero scores,
    /// merged in ascending order: zeros tie, so the lowest indices win. This is the top k of a pool
    /// whose non-zero scores (fewer than k) sit at <paramref name="nonZero"/>, k = their count + zeros.
    /// </summary>
    public static int MergeNonZeroWithFirstZeros(ReadOnlySpan<int> nonZero, int zeros, Span<int> chosen)
    {
        int count = 0, next = 0, index = 0;
        for (; zeros > 0; index++)
        {
            // Below the last zero taken, every index is chosen: non-zero ones, then zeros until enough.
            if (next < nonZero.Length && nonZero[next] == index) next++;
            else zeros--;
            chosen[count++] = index;
        }
        while (next < nonZero.Length) chosen[count++] = nonZero[next++];
        return count;
    }
}

/// <summary>Twin of <see cref="TopKSelection"/>: sort by (score descending, index ascending), take k, sort indices.</summary>
internal static class TopKSelectionReference
{
    public static int[] Select(ReadOnlySpan<float> scores, int k)
    {
        var order = Enumerable.Range(0, scores.Length).ToArray();
        var copy = scores.ToArray();
        Array.Sort(order, (x, y) => copy[x] != copy[y] ? copy[y].CompareTo(copy[x]) : x.CompareTo(y));
        var kept = order.Take(Math.Max(0, Math.Min(k, scores.Length))).ToArray();
        Array.Sort(kept);
        return kept;
    }
}
