namespace MeProp.Kernels;

/// <summary>
/// Chooses the k largest scores of a pool in O(n) without sorting: the k-th largest value t is found by
/// a radix select on the float bits (non-negative floats order like their bit patterns): a histogram of
/// the top 12 bits locates t's bucket, then histograms of the next 10 and last 10 bits of only that
/// bucket's members pin t exactly. One pass in index order then takes every score above t and, for ties
/// at t, the lowest indices first. Chosen indices come out ascending; with k &gt;= n every index is chosen.
/// Scores are magnitudes (non-negative, not NaN). Histogram passes are branch-free, which is what makes
/// this faster than quickselect on these pools.
/// </summary>
public static class TopKSelection
{
    private const int TopBits = 12, MiddleBits = 10, LowBits = 10;

    /// <summary>Scratch floats <see cref="Select"/> needs for a pool of n.</summary>
    public static int ScratchLength(int n) => n + (1 << TopBits);

    /// <summary>
    /// Writes the chosen indices (ascending) to <paramref name="chosen"/> and returns how many (min(k, n)).
    /// <paramref name="scratch"/> must hold <see cref="ScratchLength"/>(n) values.
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
        uint threshold = KthLargestBits(System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(scores), k,
            System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(scratch), out int above);
        int ties = k - above;
        int count = 0;
        var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(scores);
        for (int i = 0; i < n; i++)
        {
            uint b = bits[i];
            if (b > threshold) chosen[count++] = i;
            else if (b == threshold && ties > 0) { chosen[count++] = i; ties--; }
        }
        return count;
    }

    /// <summary>
    /// Bit pattern of the k-th largest (1-based) value, and how many values are strictly larger.
    /// scratch holds a histogram (first 2^12 entries) and the members of the chosen bucket (the rest).
    /// </summary>
    private static uint KthLargestBits(ReadOnlySpan<uint> bits, int k, Span<uint> scratch, out int above)
    {
        var histogram = scratch[..(1 << TopBits)];
        var members = scratch[(1 << TopBits)..];
        histogram.Clear();
        int shift = 32 - TopBits;
        foreach (uint b in bits) histogram[(int)(b >> shift)]++;
        int bucket = FindBucket(histogram, k, out above);
        // Gather the bucket's members, then narrow on the next bits, then the last bits.
        int m = 0;
        foreach (uint b in bits) if ((b >> shift) == (uint)bucket) members[m++] = b;
        uint prefix = (uint)bucket << shift;
        int remaining = k - above;
        foreach (var (bitShift, width) in new[] { (LowBits, MiddleBits), (0, LowBits) })
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
            m = kept;
        }
        return prefix;
    }

    /// <summary>Highest bucket b such that the counts of buckets &gt;= b reach k; <paramref name="above"/> counts those above b.</summary>
    private static int FindBucket(Span<uint> histogram, int k, out int above)
    {
        int total = 0;
        for (int b = histogram.Length - 1; b >= 0; b--)
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
