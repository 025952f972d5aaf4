using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MeProp.Kernels;

/// <summary>
/// Chooses the k largest scores of a pool in O(n) without sorting, by a radix select on the float bits
/// (non-negative floats order like their bit patterns). Pass 1 histograms the top 11 bits and finds
/// the bucket B holding the k-th largest value. Pass 2 walks the pool in index order and keeps, as
/// candidates, every value whose top bits are at least B: all of them above B are chosen, and those in
/// B are narrowed by histograms of their next 11 and last 10 bits to the exact k-th value t. A last walk
/// over the candidates (few) keeps those above t and, for ties at t, the lowest indices first. When
/// fewer than k scores are non-zero (t is zero) the zeros are never gathered: the lowest-index zeros
/// fill up the non-zero ones. Chosen
/// indices come out ascending; with k &gt;= n every index is chosen. Scores are magnitudes (non-negative,
/// not NaN). The first histogram is spread over four copies so that runs of equal values (gradients
/// are often mostly zero) do not serialise on one counter; pass 2 skips whole vectors without candidates.
/// </summary>
public static class TopKSelection
{
    private const int TopBits = 11, MiddleBits = 11, LowBits = 10;
    private const int Buckets = 1 << TopBits;
    private const int Shift = 32 - TopBits;

    /// <summary>Scratch floats <see cref="Select"/> needs for a pool of n.</summary>
    public static int ScratchLength(int n) => 3 * n + 4 * Buckets;

    /// <summary>
    /// Writes the chosen indices (ascending) to <paramref name="chosen"/> and returns how many
    /// (min(k, n)). <paramref name="scratch"/> must hold <see cref="ScratchLength"/>(n) values.
    /// </summary>
    public static int Select(ReadOnlySpan<float> scores, int k, Span<int> chosen, Span<float> scratch)
    {
        int n = scores.Length;
        if (k >= n)
        {
            for (int i = 0; i < n; i++) chosen[i] = i;
            return n;
        }
        if (k <= 0) return 0;
        var bits = MemoryMarshal.Cast<float, uint>(scores);
        var work = MemoryMarshal.Cast<float, uint>(scratch);
        var histograms = work[..(4 * Buckets)];
        var candidateBits = work.Slice(4 * Buckets, n);
        var members = work.Slice(4 * Buckets + n, n);
        var candidateIndices = MemoryMarshal.Cast<uint, int>(work.Slice(4 * Buckets + 2 * n, n));

        int bucket = TopBucket(bits, k, histograms, out int above);
        if (bucket == 0)
        {
            // The k-th largest is (nearly) zero: the pool has fewer non-zero scores than k, as a ReLU
            // network's gradient often does at 5-10%. Collecting every zero as a candidate would cost
            // several passes over the pool; instead keep all non-zero scores and the lowest-index zeros.
            int nonZero = CollectCandidates(bits, 1u, candidateIndices, candidateBits);
            if (nonZero <= k) return TakeNonZeroAndFirstZeros(candidateIndices[..nonZero], k - nonZero, chosen);
        }
        int candidates = CollectCandidates(bits, (uint)bucket << Shift, candidateIndices, candidateBits);
        if (candidates == k)
        {
            candidateIndices[..k].CopyTo(chosen);
            return k;
        }

        // Narrow the threshold inside bucket B using only its members.
        int m = 0;
        for (int c = 0; c < candidates; c++)
            if ((candidateBits[c] >> Shift) == (uint)bucket) members[m++] = candidateBits[c];
        uint threshold = (uint)bucket << Shift;
        int remaining = k - above;
        m = Narrow(members, m, LowBits, MiddleBits, histograms, ref threshold, ref remaining, ref above);
        Narrow(members, m, 0, LowBits, histograms, ref threshold, ref remaining, ref above);

        int ties = k - above, count = 0;
        for (int c = 0; c < candidates; c++)
        {
            uint b = candidateBits[c];
            if (b > threshold || b == threshold && ties-- > 0) chosen[count++] = candidateIndices[c];
        }
        return count;
    }

    /// <summary>
    /// Every non-zero index (ascending) plus the first <paramref name="zeros"/> indices of zero scores,
    /// merged in ascending order: zeros tie, so the lowest indices win. This is the top k of a pool
    /// whose non-zero scores (fewer than k) sit at <paramref name="nonZero"/>, k = their count + zeros.
    /// </summary>
    public static int TakeNonZeroAndFirstZeros(ReadOnlySpan<int> nonZero, int zeros, Span<int> chosen)
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

    /// <summary>Bucket (top 11 bits) of the k-th largest value; <paramref name="above"/> counts values in higher buckets.</summary>
    private static int TopBucket(ReadOnlySpan<uint> bits, int k, Span<uint> histograms, out int above)
    {
        histograms.Clear();
        int n = bits.Length, i = 0;
        ref uint h = ref MemoryMarshal.GetReference(histograms);
        ref uint b = ref MemoryMarshal.GetReference(bits);
        for (; i + 4 <= n; i += 4)
        {
            Unsafe.Add(ref h, (int)(Unsafe.Add(ref b, i) >> Shift))++;
            Unsafe.Add(ref h, Buckets + (int)(Unsafe.Add(ref b, i + 1) >> Shift))++;
            Unsafe.Add(ref h, 2 * Buckets + (int)(Unsafe.Add(ref b, i + 2) >> Shift))++;
            Unsafe.Add(ref h, 3 * Buckets + (int)(Unsafe.Add(ref b, i + 3) >> Shift))++;
        }
        for (; i < n; i++) Unsafe.Add(ref h, (int)(Unsafe.Add(ref b, i) >> Shift))++;
        var histogram = histograms[..Buckets];
        System.Numerics.Tensors.TensorPrimitives.Add(histogram, histograms.Slice(Buckets, Buckets), histogram);
        System.Numerics.Tensors.TensorPrimitives.Add(histogram, histograms.Slice(2 * Buckets, Buckets), histogram);
        System.Numerics.Tensors.TensorPrimitives.Add(histogram, histograms.Slice(3 * Buckets, Buckets), histogram);
        return FindBucket(histogram, k, out above);
    }

    /// <summary>Indices (ascending) and bits of every value &gt;= floor; whole vectors below it are skipped.</summary>
    private static int CollectCandidates(ReadOnlySpan<uint> bits, uint floor, Span<int> indices, Span<uint> candidateBits)
    {
        int count = 0, i = 0;
        ref uint start = ref MemoryMarshal.GetReference(bits);
        if (Vector512.IsHardwareAccelerated)
        {
            var f = Vector512.Create(floor);
            for (; i + 16 <= bits.Length; i += 16)
            {
                ulong mask = Vector512.GreaterThanOrEqual(Vector512.LoadUnsafe(ref start, (nuint)i), f).ExtractMostSignificantBits();
                while (mask != 0)
                {
                    int index = i + BitOperations.TrailingZeroCount(mask);
                    indices[count] = index;
                    candidateBits[count++] = bits[index];
                    mask &= mask - 1;
                }
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var f = Vector256.Create(floor);
            for (; i + 8 <= bits.Length; i += 8)
            {
                uint mask = Vector256.GreaterThanOrEqual(Vector256.LoadUnsafe(ref start, (nuint)i), f).ExtractMostSignificantBits();
                while (mask != 0)
                {
                    int index = i + BitOperations.TrailingZeroCount(mask);
                    indices[count] = index;
                    candidateBits[count++] = bits[index];
                    mask &= mask - 1;
                }
            }
        }
        for (; i < bits.Length; i++)
            if (bits[i] >= floor)
            {
                indices[count] = i;
                candidateBits[count++] = bits[i];
            }
        return count;
    }

    /// <summary>Fixes <paramref name="width"/> more bits of the threshold from the bucket's members; keeps the members that match.</summary>
    private static int Narrow(Span<uint> members, int m, int bitShift, int width, Span<uint> histogram,
        ref uint prefix, ref int remaining, ref int above)
    {
        var h = histogram[..(1 << width)];
        h.Clear();
        uint mask = (1u << width) - 1;
        for (int i = 0; i < m; i++) h[(int)((members[i] >> bitShift) & mask)]++;
        int sub = FindBucket(h, remaining, out int subAbove);
        above += subAbove;
        remaining -= subAbove;
        prefix |= (uint)sub << bitShift;
        int kept = 0;
        for (int i = 0; i < m; i++) if (((members[i] >> bitShift) & mask) == (uint)sub) members[kept++] = members[i];
        return kept;
    }

    /// <summary>Highest bucket b such that the counts of buckets &gt;= b reach k; <paramref name="above"/> counts those above b.</summary>
    private static int FindBucket(Span<uint> histogram, int k, out int above)
    {
        int total = 0;
        int b = histogram.Length - 1;
        // Large scores are rare: skip the empty top of the histogram a vector at a time.
        while (b >= 15 && Vector512.IsHardwareAccelerated
               && Vector512.EqualsAll(Vector512.Create<uint>(histogram.Slice(b - 15, 16)), Vector512<uint>.Zero))
            b -= 16;
        for (; b >= 0; b--)
        {
            int next = total + (int)histogram[b];
            if (next >= k)
            {
                above = total;
                return b;
            }
            total = next;
        }
        throw new InvalidOperationException("top-k: histogram holds fewer than k values");
    }
}

/// <summary>Twin of <see cref="TopKSelection"/>: sort by (score descending, index ascending), take k, sort indices.</summary>
public static class TopKSelectionReference
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
