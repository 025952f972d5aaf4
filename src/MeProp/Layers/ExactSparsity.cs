namespace MeProp.Layers;

/// <summary>
/// What a conv or linear layer's dense backward (one without a meProp selection) does with the zeros of
/// dL/dy, which after ReLU and max pooling are most of it. The sparse kernels of meProp, given every
/// non-zero entry, compute the same dW, db and dx (the same sums, in another order: equal within float
/// rounding) with work proportional to the non-zeros.
/// </summary>
public enum ExactSparsity
{
    /// <summary>Always the dense products (and a dense training forward that keeps its patch matrix).</summary>
    Off,
    /// <summary>The sparse kernels when dL/dy's measured density is at most the layer's <see cref="ExactSparsityThresholds"/>, else dense.</summary>
    Auto,
    /// <summary>The sparse kernels whatever the density (for tests and measurements).</summary>
    Always,
}

/// <summary>
/// Densities (non-zero fraction of dL/dy) up to which <see cref="ExactSparsity.Auto"/> takes the sparse
/// kernels. The decision reads only the gradient, so a run stays deterministic for its seed. Set from
/// `meprop bench --exact-threshold` (a layer's forward, backward and update, dense against exact-sparse,
/// at densities 1-100%; docs/bench/exact-sparsity/).
/// </summary>
public static class ExactSparsityThresholds
{
    /// <summary>
    /// Convolutions: the exact backward broke even at 45-55% on the paper network's layers and a 64-channel
    /// 3x3 one, near 70% on a 32-channel 3x3 one (0.7-0.9x the time at 30%); kept below all of them.
    /// </summary>
    public const double Convolution = 0.4;

    /// <summary>
    /// Convolutions with at most <see cref="NarrowOutputChannels"/> output channels: their dense weight
    /// gradient is a product with that few rows over the whole patch matrix, and the sparse kernels were
    /// faster up to 70% density (a 3x3 layer from 16 to 16 channels at 32x32, batches 32 and 128: 0.5-0.9x
    /// the dense path's time), slower only with every entry non-zero (1.08x).
    /// </summary>
    public const double NarrowConvolution = 0.7;

    public const int NarrowOutputChannels = 16;

    /// <summary>The threshold of a convolution with <paramref name="outputChannels"/> output channels.</summary>
    public static double ForConvolution(int outputChannels) => outputChannels <= NarrowOutputChannels ? NarrowConvolution : Convolution;

    /// <summary>
    /// Linear layers, when the optimizer does not fuse its update into the dense products (which won at
    /// every density): the sparse kernels broke even near 10% on the paper network's 3136 -> 1024 layer
    /// at batch 100 (0.6x the time at 1%).
    /// </summary>
    public const double Linear = 0.05;
}
