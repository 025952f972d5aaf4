using MeProp.Sparsity;

namespace MeProp.Layers;

/// <summary>
/// A layer whose backward can run on a meProp-sparsified dL/dy (Conv2d, Linear), and that counts the
/// multiply-adds its backward performs, so "5% of the gradient" can be read as a work ratio.
/// </summary>
public interface IMePropLayer : ILayer
{
    /// <summary>The selection applied to dL/dy in Backward; null for the dense backward.</summary>
    GradientSparsifier? Sparsifier { get; set; }

    /// <summary>Multiply-adds of dW and dx performed by Backward since the last reset (a kept entry costs one row of K each).</summary>
    long BackwardMacs { get; }

    /// <summary>What the dense backward would have performed on the same batches.</summary>
    long DenseBackwardMacs { get; }

    /// <summary>
    /// Entries of dL/dy seen, non-zero before selection and kept, since the last reset. Without a
    /// sparsifier they are counted only when <see cref="MeasureDensity"/> is on (it costs a pass over dL/dy).
    /// </summary>
    SparsityCounters GradientCounters { get; }

    /// <summary>Count non-zeros of dL/dy in the dense backward too.</summary>
    bool MeasureDensity { get; set; }

    void ResetCounters();
}
