namespace MeProp.Kernels;

/// <summary>Plain-loop twin of <see cref="NonZeroGradient"/>, for tests.</summary>
internal static class NonZeroGradientReference
{
    public static long Count(ReadOnlySpan<float> values)
    {
        long count = 0;
        foreach (float v in values) if (v != 0) count++;
        return count;
    }

    public static void Gather(ReadOnlySpan<float> dy, int n, int units, int plane, SparseGradient result)
    {
        result.Reset(units, n * plane, n * plane);
        for (int u = 0; u < units; u++)
        {
            int count = 0;
            for (int i = 0; i < n; i++)
                for (int p = 0; p < plane; p++)
                {
                    float v = dy[(i * units + u) * plane + p];
                    if (v == 0) continue;
                    result.Positions[u * n * plane + count] = i * plane + p;
                    result.Values[u * n * plane + count] = v;
                    count++;
                }
            result.Counts[u] = count;
        }
        result.Selected = result.NonZeroBefore = result.Count;
    }
}
