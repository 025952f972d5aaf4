using MeProp.Kernels;
using MeProp.Sparsity;

namespace MeProp.Layers;

/// <summary>
/// What a layer's backward did since the last <see cref="Reset"/> (<see cref="IMePropLayer.Counters"/>):
/// the multiply-adds it performed and those the dense backward would have performed on the same
/// batches, so that "5% of the gradient" can be read as a work ratio, and the entries of dL/dy it saw,
/// found non-zero and kept. The layer adds to it in Backward; the trainer's metrics and `meprop stats`
/// read it.
/// </summary>
public sealed class BackwardCounters
{
    private SparsityCounters _gradient;

    /// <summary>Multiply-adds of dW and dx performed (with meProp, a kept entry costs one row of the weight each).</summary>
    public long BackwardMacs { get; private set; }

    /// <summary>What the dense backward would have performed on the same batches.</summary>
    public long DenseBackwardMacs { get; private set; }

    /// <summary>
    /// Entries of dL/dy seen, non-zero before selection, and kept. In a dense backward they are counted
    /// only when <see cref="MeasureDensity"/> is on (it costs a pass over dL/dy).
    /// </summary>
    public SparsityCounters Gradient => _gradient;

    /// <summary>Count the non-zeros of dL/dy in the dense backward too.</summary>
    public bool MeasureDensity { get; set; }

    /// <summary>Backward passes counted.</summary>
    public int Backwards { get; private set; }

    /// <summary>Of <see cref="Backwards"/>, those without a meProp selection that ran the sparse kernels on every non-zero (<see cref="ExactSparsity"/>).</summary>
    public int ExactSparseBackwards { get; private set; }

    public void Reset()
    {
        BackwardMacs = DenseBackwardMacs = 0;
        Backwards = ExactSparseBackwards = 0;
        _gradient = default;
    }

    /// <summary>Counts a dense backward of <paramref name="macs"/> multiply-adds on <paramref name="outputGradient"/> (dL/dy).</summary>
    public void AddDense(ReadOnlySpan<float> outputGradient, long macs)
    {
        Backwards++;
        BackwardMacs += macs;
        DenseBackwardMacs += macs;
        if (MeasureDensity) _gradient.Add(outputGradient);
    }

    /// <summary>Counts a dense backward on a dL/dy of <paramref name="entries"/> values whose non-zeros were counted (<paramref name="nonZero"/>).</summary>
    public void AddDense(long entries, long nonZero, long macs)
    {
        Backwards++;
        BackwardMacs += macs;
        DenseBackwardMacs += macs;
        _gradient.Total += entries;
        _gradient.NonZero += nonZero;
        _gradient.Kept += entries;
    }

    /// <summary>Counts an exact backward on every non-zero entry of dL/dy (<paramref name="nonZeros"/>).</summary>
    public void AddExact(SparseGradient nonZeros, long macs, long denseMacs)
    {
        ExactSparseBackwards++;
        AddSparse(nonZeros, macs, denseMacs);
    }

    /// <summary>
    /// Counts a backward on the kept entries of <paramref name="selection"/> that performed
    /// <paramref name="macs"/> multiply-adds where the dense one would have performed <paramref name="denseMacs"/>.
    /// </summary>
    public void AddSparse(SparseGradient selection, long macs, long denseMacs)
    {
        Backwards++;
        BackwardMacs += macs;
        DenseBackwardMacs += denseMacs;
        _gradient.Add(selection);
    }
}
