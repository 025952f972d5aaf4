using MeProp.Sparsity;

namespace MeProp.Layers;

/// <summary>
/// A layer whose backward can run on a meProp-sparsified dL/dy (Conv2d, Linear), and that counts what
/// its backward does (<see cref="Counters"/>).
/// </summary>
public interface IMePropLayer : ILayer
{
    /// <summary>The selection applied to dL/dy in Backward; null for the dense backward.</summary>
    GradientSparsifier? Sparsifier { get; set; }

    /// <summary>Multiply-adds and dL/dy's entries of Backward since the last reset.</summary>
    BackwardCounters Counters { get; }

    /// <summary>Whether a backward without <see cref="Sparsifier"/> runs on dL/dy's non-zero entries only.</summary>
    ExactSparsity ExactSparsity { get; set; }
}
