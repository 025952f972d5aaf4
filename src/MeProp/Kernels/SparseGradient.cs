namespace MeProp.Kernels;

/// <summary>
/// The kept entries of a layer's dL/dy, grouped by output unit (a conv output channel or a linear
/// output feature). Unit u owns slots [u·Capacity, u·Capacity + Counts[u]) of <see cref="Positions"/>
/// and <see cref="Values"/>; positions are ascending within a unit. A position is a row of the layer's
/// input matrix: n·OH·OW + p for a convolution (a row of its im2col matrix), the example n for a
/// linear layer. Only entries whose value is non-zero are stored: a selected entry whose current
/// dL/dy is zero (common with ReLU, and with a running average that remembers earlier steps) adds
/// nothing to dW, db or dx, so storing it would only cost the backward kernels work.
/// <see cref="Selected"/> still counts every entry the selection kept. Buffers are sized once per
/// shape and reused.
/// </summary>
public sealed class SparseGradient
{
    public int Units { get; private set; }
    /// <summary>Rows of the input matrix (N·OH·OW for conv, N for linear).</summary>
    public int PositionCount { get; private set; }
    /// <summary>Slots reserved per unit.</summary>
    public int Capacity { get; private set; }
    public int[] Counts { get; private set; } = [];
    public int[] Positions { get; private set; } = [];
    public float[] Values { get; private set; } = [];

    /// <summary>Entries the selection kept, zero-valued ones included (<see cref="Count"/> and more).</summary>
    public long Selected { get; set; }

    /// <summary>Entries of dL/dy that were not zero before the selection.</summary>
    public long NonZeroBefore { get; set; }

    /// <summary>Entries of the dense dL/dy it was selected from (Units x PositionCount).</summary>
    public long DenseCount => (long)Units * PositionCount;

    /// <summary>Sets the shape and clears the counts; grows the buffers only when needed.</summary>
    public void Reset(int units, int positionCount, int capacity)
    {
        Units = units;
        PositionCount = positionCount;
        Capacity = capacity;
        if (Counts.Length < units) Counts = new int[units];
        long slots = (long)units * capacity;
        if (Positions.Length < slots)
        {
            Positions = new int[slots];
            Values = new float[slots];
        }
        Array.Clear(Counts, 0, units);
        Selected = 0;
        NonZeroBefore = 0;
    }

    /// <summary>Total stored (kept and non-zero) entries.</summary>
    public long Count
    {
        get
        {
            long total = 0;
            for (int u = 0; u < Units; u++) total += Counts[u];
            return total;
        }
    }

    /// <summary>The dense [PositionCount, Units] matrix this represents (zeros elsewhere); for tests and references.</summary>
    public float[] ToDenseRows()
    {
        var dense = new float[(long)PositionCount * Units];
        for (int u = 0; u < Units; u++)
            for (int e = 0; e < Counts[u]; e++)
                dense[(long)Positions[u * Capacity + e] * Units + u] = Values[u * Capacity + e];
        return dense;
    }
}
