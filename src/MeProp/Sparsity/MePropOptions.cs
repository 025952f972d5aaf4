namespace MeProp.Sparsity;

/// <summary>
/// How the kept entries of dL/dy are chosen. Each member is one policy type in this folder, chosen by
/// <see cref="GradientSparsifier"/>; its kebab-case name is the command line's and the one recorded in
/// checkpoints.
/// </summary>
public enum SelectionPolicy
{
    /// <summary>Conv: one pool per output channel over batch x height x width (meProp-CNN).</summary>
    PerChannel,
    /// <summary>Conv: one pool per example and channel (height x width).</summary>
    PerExampleChannel,
    /// <summary>Linear: each example keeps its own top k outputs (the original meProp).</summary>
    PerExample,
    /// <summary>Linear: one set of k outputs for the whole batch, chosen by summed magnitude.</summary>
    Unified,
    /// <summary>Baseline: k uniformly random positions per pool (the layer's default pools), seeded.</summary>
    Random,
    /// <summary>Conv: keeps whole output channels, the k = ceil(ratio x channels) with the largest mean score over batch x height x width (ssProp's).</summary>
    Channel,
}

/// <summary>Shape of the running gradient of paper eq. 15.</summary>
public enum DecayShape
{
    /// <summary>As dL/dy, batch slot by batch slot (the paper's reading).</summary>
    Full,
    /// <summary>One value per channel (or output) and position, averaged over the batch.</summary>
    ChannelPosition,
}

/// <summary>
/// meProp settings of one layer: keep k = ceil(Ratio x pool size) entries of each pool, chosen by |dL/dy|,
/// or by the running average run = Decay·run + (1 - Decay)·|dL/dy| when Decay &gt; 0.
/// </summary>
public sealed record MePropOptions
{
    /// <summary>Fraction kept, in (0, 1].</summary>
    public double Ratio { get; init; } = 0.05;
    /// <summary>Running-average decay in [0, 1); 0 selects on the current gradient.</summary>
    public double Decay { get; init; }
    public DecayShape DecayShape { get; init; } = DecayShape.Full;
    public SelectionPolicy Selection { get; init; } = SelectionPolicy.PerChannel;

    /// <summary>
    /// Adaptive k (TinyProp's idea): each pool keeps the fewest of its top-k entries, largest |dL/dy| first,
    /// that hold this fraction of the L1 mass of the pool's dL/dy, so k = ceil(Ratio x pool) becomes the
    /// most kept. Null keeps k fixed. Per-channel and per-example selection, with the full-shaped running
    /// gradient when decaying (<see cref="MassTrimming"/>).
    /// </summary>
    public double? MassFraction { get; init; }

    /// <summary>
    /// Shift each unit's kept non-zero values (an output channel's or feature's, over the whole batch) so that
    /// their mean is zero, before dW and dx are computed from them; kept entries whose dL/dy is zero stay zero.
    /// For layers that batch norm follows: its exact dL/dy has mean zero over each unit, and kept values that
    /// do not would add to the weight gradient their sum times the unit's mean input, a component of one sign
    /// step after step that the exact gradient lacks (with it, per-feature-map top-k trains ResNet-20 on every
    /// layer; experiments/beyond/centred-topk.sh). The layer's bias gradient, their sum, is then zero, as it is
    /// exactly under batch norm: elsewhere the bias would not train. No shift when every entry is kept (ratio 1
    /// without trimming by mass: the dense backward).
    /// Not with channel selection, which keeps whole units with the values the layer's gradient has.
    /// </summary>
    public bool ZeroMean { get; init; }

    /// <summary>Throws an ArgumentException naming the bad value.</summary>
    public void Validate()
    {
        if (!(Ratio > 0 && Ratio <= 1)) throw new ArgumentException($"top-k ratio must be in (0, 1], got {Ratio}");
        if (!(Decay >= 0 && Decay < 1)) throw new ArgumentException($"decay must be in [0, 1), got {Decay}");
        if (Decay > 0 && Selection == SelectionPolicy.Random)
            throw new ArgumentException("random selection draws its positions without looking at the gradient: a decay (running average of |dL/dy|) would never be read");
        if (ZeroMean && Selection == SelectionPolicy.Channel)
            throw new ArgumentException("zero mean shifts the entries a selection keeps of a unit; channel selection keeps whole units, which it leaves as they are");
        if (MassFraction is double f)
        {
            if (!(f > 0 && f <= 1)) throw new ArgumentException($"mass fraction must be in (0, 1], got {f}");
            if (Selection is not (SelectionPolicy.PerChannel or SelectionPolicy.PerExample) || (Decay > 0 && DecayShape == DecayShape.ChannelPosition))
                throw new ArgumentException("an adaptive k (mass fraction) needs per-channel or per-example selection, and the full-shaped running gradient when decaying");
        }
    }

    /// <summary>k for a pool of <paramref name="poolSize"/> entries: ceil(ratio x size), at least 1, at most the size.</summary>
    public int KeepCount(int poolSize) => poolSize == 0 ? 0 : Math.Clamp((int)Math.Ceiling(Ratio * poolSize - 1e-9), 1, poolSize);
}
