namespace MeProp.Layers;

/// <summary>
/// What a conv or linear layer's dense backward (one without a meProp selection) does with the zeros of
/// dL/dy, which after ReLU and max pooling are most of it, and what a stride-1 convolution's forward does
/// with the zeros of its input. The sparse kernels of meProp, given every non-zero entry, compute the same
/// dW, db and dx (the same sums, in another order: equal within float rounding) with work proportional to
/// the non-zeros; the forward's scatter likewise computes the same output.
/// </summary>
public enum ExactSparsity
{
    /// <summary>Always the dense products (and a dense training forward that keeps its patch matrix).</summary>
    Off,
    /// <summary>
    /// The sparse kernels when dL/dy's measured density is at most the layer's threshold in
    /// <see cref="ExactSparsityThresholds"/>, else the dense path (for a convolution, without a patch
    /// matrix); a stride-1 convolution's forward from its input's non-zeros when they are few enough.
    /// </summary>
    Auto,
    /// <summary>The sparse kernels (and a stride-1 convolution's sparse-input forward) whatever the density, for tests and measurements.</summary>
    Always,
}

/// <summary>
/// Densities (non-zero fractions of dL/dy, or of a convolution's input) up to which
/// <see cref="ExactSparsity.Auto"/> takes the sparse kernels. The decision reads only the data, so a run
/// stays deterministic for its seed. Set from `meprop bench --exact-threshold` (a layer's forward, backward
/// and update, dense against exact-sparse, at densities 1-100%; docs/bench/exact-sparsity/) and, for the
/// input, from timings of a layer's forward at densities 5-40%.
/// </summary>
public static class ExactSparsityThresholds
{
    /// <summary>
    /// Convolutions: against the dense path without a patch matrix (the direct weight gradient and, at
    /// stride 1, the direct input gradient) the exact backward broke even at 21-35% on ResNet-20's three
    /// widths, 30-39% on the paper network's second layer and near 50% on its first (batches 10-128).
    /// </summary>
    public const double Convolution = 0.3;

    /// <summary>
    /// A stride-1 convolution's forward runs from its input's non-zero entries when at most this share of
    /// the input is non-zero (after ReLU and pooling on a trained network most of it is: 12% of the
    /// paper network's second layer's input, 19% of an MNIST image). Against the dense direct forward
    /// the scatter broke even at 17% (16 -> 16 channels, 3x3, 32x32), 26% (64 -> 64, 8x8) and ~30% (the
    /// paper network's layers), and took 0.46x the time at 12% on its second layer (batch 100).
    /// </summary>
    public const double ConvolutionInput = 0.2;

    /// <summary>
    /// A linear layer's forward multiplies only its input's non-zeros when at most this share of the input
    /// is non-zero (on a trained paper network fc1's input is 5% non-zero). Against the dense product it
    /// took 0.16x / 0.35x / 0.67x the time at 5% / 15% / 30% on 3136 -> 1024 at batch 100, and 0.71x / 0.87x
    /// / 1.16x at batch 10, where the dense product is bound by reading the weight as this one is.
    /// </summary>
    public const double LinearInput = 0.2;

    /// <summary>
    /// Fewest outputs for the linear sparse-input forward: below it the dense product is too small to pay
    /// for transposing the weight (1024 -> 10: 0.07 ms dense at batch 100).
    /// </summary>
    public const int LinearInputMinOutputs = 64;

    /// <summary>
    /// Linear layers, when the optimizer does not fuse its update into the dense products (which won at
    /// every density): the sparse kernels broke even near 10% on the paper network's 3136 -> 1024 layer
    /// at batch 100 (0.6x the time at 1%).
    /// </summary>
    public const double Linear = 0.05;
}
