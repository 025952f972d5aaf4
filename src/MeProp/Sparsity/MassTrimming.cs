using MeProp.Kernels;

namespace MeProp.Sparsity;

/// <summary>
/// Adaptive k (TinyProp's idea, <see cref="MePropOptions.MassFraction"/>): after the top-k selection,
/// each pool keeps only the fewest of its selected entries, largest |dL/dy| first (of equal ones, the one
/// stored first), whose magnitudes sum to at least the fraction F of the L1 mass of the pool's whole dL/dy,
/// and at least one; k = ceil(ratio x pool) is then the most it keeps. Pools are those of the per-channel
/// policy (a unit over N·P entries) or the per-example one (an example over the U units). Kept entries stay
/// in ascending position order. Buffers grow with the largest pool seen and are reused.
/// </summary>
internal sealed class MassTrimming
{
    /// <summary>Per entry of a pool: its magnitude, descending, then its place in the list, ascending (<see cref="Key"/>).</summary>
    private long[] _keys = [];
    private int[] _cursor = [];
    private int[] _unitOf = [];
    private bool[] _removed = [];

    /// <summary>Trims <paramref name="result"/> in place; returns how many stored entries it removed, per unit added into <paramref name="removedByUnit"/>.</summary>
    public long Trim(SparseGradient result, ReadOnlySpan<float> dy, int n, int units, int plane, SelectionPolicy pools, double fraction, long[] removedByUnit)
    {
        int slots = units * result.Capacity;
        if (_removed.Length < slots) _removed = new bool[slots];
        Array.Clear(_removed, 0, slots);
        int largestPool = pools == SelectionPolicy.PerExample ? units : result.Capacity;
        if (_keys.Length < largestPool)
        {
            _keys = new long[largestPool];
            _unitOf = new int[largestPool];
        }
        if (pools == SelectionPolicy.PerExample) MarkPerExample(result, dy, n, units, fraction);
        else MarkPerChannel(result, dy, n, units, plane, fraction);
        long removed = 0;
        for (int u = 0; u < units; u++)
        {
            int start = u * result.Capacity, count = result.Counts[u], kept = 0;
            for (int e = 0; e < count; e++)
            {
                if (_removed[start + e]) continue;
                result.Positions[start + kept] = result.Positions[start + e];
                result.Values[start + kept] = result.Values[start + e];
                kept++;
            }
            removedByUnit[u] += count - kept;
            removed += count - kept;
            result.Counts[u] = kept;
        }
        return removed;
    }

    /// <summary>Each unit's pool: dy[:, u, :].</summary>
    private void MarkPerChannel(SparseGradient result, ReadOnlySpan<float> dy, int n, int units, int plane, double fraction)
    {
        for (int u = 0; u < units; u++)
        {
            int count = result.Counts[u], start = u * result.Capacity;
            if (count == 0) continue;
            double mass = 0;
            for (int i = 0; i < n; i++) mass += SumOfMagnitudes(dy.Slice((i * units + u) * plane, plane));
            for (int e = 0; e < count; e++) _keys[e] = Key(result.Values[start + e], e);
            int keep = KeepCount(count, mass * fraction);
            for (int r = keep; r < count; r++) _removed[start + Place(_keys[r])] = true;
        }
    }

    /// <summary>Each example's pool: dy[i, :] (a linear layer's, P = 1). Units hold their entries in ascending example order.</summary>
    private void MarkPerExample(SparseGradient result, ReadOnlySpan<float> dy, int n, int units, double fraction)
    {
        if (_cursor.Length < units) _cursor = new int[units];
        Array.Clear(_cursor, 0, units);
        for (int i = 0; i < n; i++)
        {
            int count = 0;
            for (int u = 0; u < units; u++)
            {
                int slot = u * result.Capacity + _cursor[u];
                if (_cursor[u] >= result.Counts[u] || result.Positions[slot] != i) continue;
                _keys[count] = Key(result.Values[slot], count);
                _unitOf[count] = slot;
                count++;
                _cursor[u]++;
            }
            if (count == 0) continue;
            double mass = SumOfMagnitudes(dy.Slice(i * units, units));
            int keep = KeepCount(count, mass * fraction);
            for (int r = keep; r < count; r++) _removed[_unitOf[Place(_keys[r])]] = true;
        }
    }

    /// <summary>
    /// Sorts the first <paramref name="count"/> keys and returns how many of the largest magnitudes it takes
    /// to reach <paramref name="target"/> (all of them if they fall short; at least one).
    /// </summary>
    private int KeepCount(int count, double target)
    {
        _keys.AsSpan(0, count).Sort();
        double sum = 0;
        int keep = 0;
        while (keep < count && sum < target) sum += Magnitude(_keys[keep++]);
        return Math.Max(keep, 1);
    }

    /// <summary>
    /// Orders by |value| descending, then by place ascending: the bits of a non-negative float grow with
    /// its value, so the high half holds their complement.
    /// </summary>
    private static long Key(float value, int place) =>
        ((long)(int.MaxValue - BitConverter.SingleToInt32Bits(Math.Abs(value))) << 32) | (uint)place;

    /// <summary>Σ|v| in float64, as the kept entries' magnitudes are summed, so a fraction of 1 keeps every non-zero entry.</summary>
    private static double SumOfMagnitudes(ReadOnlySpan<float> values)
    {
        double sum = 0;
        foreach (float v in values) sum += Math.Abs(v);
        return sum;
    }

    private static int Place(long key) => (int)(key & 0xFFFFFFFF);

    private static float Magnitude(long key) => BitConverter.Int32BitsToSingle(int.MaxValue - (int)(key >> 32));
}
