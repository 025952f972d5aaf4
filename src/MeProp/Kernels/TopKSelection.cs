namespace MeProp.Kernels;

/// <summary>
/// Chooses the k largest scores of a pool in expected O(n): quickselect finds the k-th largest value t
/// on a copy, then one pass in index order takes every score above t and, for ties at t, the lowest
/// indices first. Chosen indices come out in ascending order. With k &gt;= n every index is chosen.
/// Scores are magnitudes (non-negative, not NaN).
/// </summary>
public static class TopKSelection
{
    /// <summary>Writes the chosen indices (ascending) to <paramref name="chosen"/> and returns how many (min(k, n)).</summary>
    public static int Select(ReadOnlySpan<float> scores, int k, Span<int> chosen, Span<float> scratch)
    {
        int n = scores.Length;
        if (k >= n)
        {
            for (int i = 0; i < n; i++) chosen[i] = i;
            return n;
        }
        if (k <= 0) return 0;
        var work = scratch[..n];
        scores.CopyTo(work);
        float threshold = KthLargest(work, k);
        int above = 0;
        for (int i = 0; i < n; i++) if (scores[i] > threshold) above++;
        int ties = k - above;
        int count = 0;
        for (int i = 0; i < n; i++)
        {
            float s = scores[i];
            if (s > threshold) chosen[count++] = i;
            else if (s == threshold && ties > 0) { chosen[count++] = i; ties--; }
        }
        return count;
    }

    /// <summary>The k-th largest value (1-based) of <paramref name="values"/>, which it reorders.</summary>
    internal static float KthLargest(Span<float> values, int k)
    {
        int target = k - 1, left = 0, right = values.Length - 1;
        while (left < right)
        {
            // Median of three as pivot keeps sorted and reversed pools linear.
            int mid = left + (right - left) / 2;
            float a = values[left], b = values[mid], c = values[right];
            float pivot = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
            int i = left, j = right;
            while (i <= j)
            {
                while (values[i] > pivot) i++;
                while (values[j] < pivot) j--;
                if (i <= j)
                {
                    (values[i], values[j]) = (values[j], values[i]);
                    i++; j--;
                }
            }
            if (target <= j) right = j;
            else if (target >= i) left = i;
            else return values[target];
        }
        return values[target];
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
