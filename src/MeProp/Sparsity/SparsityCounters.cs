using MeProp.Kernels;

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

    /// <summary>Counts a selection: its dL/dy's entries, their non-zeros and the entries kept.</summary>
    public void Add(SparseGradient selection)
    {
        Total += selection.DenseCount;
        NonZero += selection.NonZeroBefore;
        Kept += selection.Selected;
    }

    internal static long CountNonZero(ReadOnlySpan<float> values) => NonZeroGradient.Count(values);
    public readonly double KeptFraction => Total == 0 ? 0 : (double)Kept / Total;
}
