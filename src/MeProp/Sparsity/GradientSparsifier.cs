using MeProp.Kernels;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Sparsity;

/// <summary>
/// A layer's meProp selection: turns its dense dL/dy into a <see cref="SparseGradient"/>, keeping per
/// pool the entries that score highest. Legend: dy is [N, U, P] (U output units: conv channels or
/// linear outputs; P positions per example: OH·OW for conv, 1 for linear). The policy
/// (<see cref="MePropOptions.Selection"/>) sets the pools, each one a type (<see cref="ISelectionPolicy"/>):
/// per-channel, one pool per unit over N·P entries; per-example-channel, one per (n, u) over P;
/// per-example, one per n over U (linear); channel, one over the U conv channels by mean score,
/// keeping whole channels; unified, one over U scored by the sum over the batch
/// (linear); random, the layer's default pools with uniform choice. Scores are |dy|, or with decay the
/// running average run = decay·run + (1-decay)·|dy| (<see cref="GradientScorer"/>), shaped like dy
/// (Full, one slot per batch position) or [U, P] averaged over the batch (ChannelPosition: positions
/// chosen per unit are then kept for every example). Kept values are always the current dy. This
/// object holds what outlives a step: the running gradient, the random stream and the scratch. The
/// per-channel, per-example-channel and channel policies split their work over units, each taken by the
/// next free worker; the others run on the calling thread.
/// </summary>
public sealed unsafe class GradientSparsifier
{
    private readonly string _layerName;
    private readonly Tensor _running = new(0);
    private readonly Rng _rng;
    private readonly bool _convolutional;
    private ISelectionPolicy _policy;
    private readonly SelectionScratch _scratch = new();
    private readonly MassTrimming _trimming = new();
    private long[] _trimmedByUnit = [];

    public GradientSparsifier(string layerName, MePropOptions options, bool convolutional, ulong seed)
    {
        options.Validate();
        bool linearPolicy = options.Selection is SelectionPolicy.PerExample or SelectionPolicy.Unified;
        if (convolutional && linearPolicy)
            throw new ArgumentException($"{layerName}: selection '{System.Text.Json.JsonNamingPolicy.KebabCaseLower.ConvertName(options.Selection.ToString())}' is for linear layers; a convolution takes per-channel, per-example-channel, channel or random");
        if (!convolutional && options.Selection is SelectionPolicy.PerExampleChannel or SelectionPolicy.Channel)
            throw new ArgumentException($"{layerName}: selection '{System.Text.Json.JsonNamingPolicy.KebabCaseLower.ConvertName(options.Selection.ToString())}' is for convolutions; a linear layer takes per-example, unified, per-channel or random");
        _layerName = layerName;
        _convolutional = convolutional;
        Options = options;
        _rng = Rng.ForStream(seed, 0x6D65_7072);
        _policy = CreatePolicy(options, convolutional, _rng);
    }

    /// <summary>The policy type that selects for <paramref name="options"/> on a convolution or a linear layer.</summary>
    private static ISelectionPolicy CreatePolicy(MePropOptions options, bool convolutional, Rng rng) => options.Selection switch
    {
        SelectionPolicy.Random => new RandomSelection(options, convolutional, rng),
        // Whole channels, scored on either shape of running gradient.
        SelectionPolicy.Channel => new ChannelSelection(options),
        // The batch-averaged running gradient has its own selection: positions per unit (a linear
        // layer's one position per example makes that a choice of units), kept for every example.
        _ when options.Decay > 0 && options.DecayShape == DecayShape.ChannelPosition => convolutional
            ? new ChannelPositionSelection(options)
            : new UnifiedSelection(options, batchAveragedRunning: true),
        SelectionPolicy.PerChannel => new PerChannelSelection(options),
        SelectionPolicy.PerExampleChannel => new PerExampleChannelSelection(options),
        SelectionPolicy.PerExample => new PerExampleSelection(options),
        SelectionPolicy.Unified => new UnifiedSelection(options, batchAveragedRunning: false),
        _ => throw new ArgumentException($"unknown selection policy {options.Selection}"),
    };

    public MePropOptions Options { get; private set; }

    /// <summary>
    /// The ratio in force, k = ceil(ratio x pool size): settable between steps (a schedule sets it at each
    /// epoch's start). The running gradient and the random stream carry on; setting the ratio it has
    /// changes nothing. Ratio 1 keeps every entry the selection sees: the dense gradients, unless
    /// <see cref="MePropOptions.MassFraction"/> trims them (see <see cref="KeepAll"/>).
    /// </summary>
    public double Ratio
    {
        get => Options.Ratio;
        set
        {
            if (value == Options.Ratio) return;
            var options = Options with { Ratio = value };
            options.Validate();
            Options = options;
            // Policies read k from their options; their only other state is a per-channel hint the selection does not depend on.
            _policy = CreatePolicy(options, _convolutional, _rng);
        }
    }
    /// <summary>
    /// Skip the trimming by mass (<see cref="MePropOptions.MassFraction"/>). A schedule's dense epochs set it with
    /// <see cref="Ratio"/> 1, which keeps every entry and skips a zero-mean shift: the backward is then the exact
    /// dense one, while the running gradient and the random stream carry on.
    /// </summary>
    public bool KeepAll { get; set; }

    /// <summary>
    /// Whether a selection keeps every entry: at ratio 1 without trimming by mass (or with <see cref="KeepAll"/>).
    /// A layer then runs its dense backward, whose gradients are the dense layer's to the bit.
    /// </summary>
    public bool KeepsEveryEntry => Options.Ratio >= 1 && (Options.MassFraction is null || KeepAll);

    /// <summary>The last selection (valid until the next call).</summary>
    public SparseGradient Result => _scratch.Result;

    /// <summary>The running gradient (empty until the first step with decay &gt; 0).</summary>
    public Tensor RunningGradient => _running;
    public Rng Rng => _rng;

    /// <summary>Checkpoint tensors of the layer named <paramref name="layer"/>: its running gradient, when it keeps one.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> StateTensors(string layer) =>
        Options.Decay > 0 ? [(layer + ".meprop.running_grad", _running)] : [];

    /// <summary>Checkpoint metadata: the random-k generator's state.</summary>
    public IEnumerable<(string Key, string Value)> StateMetadata(string layer) =>
        [(layer + ".meprop.rng", string.Join(",", _rng.GetState()))];

    /// <summary>Restores <see cref="StateMetadata"/>; a checkpoint without it is not of a run with meProp on this layer.</summary>
    public void RestoreMetadata(string layer, IReadOnlyDictionary<string, string> metadata)
    {
        if (!metadata.TryGetValue(layer + ".meprop.rng", out var text))
            throw new ArgumentException($"checkpoint has no '{layer}.meprop.rng' state: it is not of a run with meProp on {layer}");
        _rng.SetState(text.Split(',').Select(ulong.Parse).ToArray());
    }

    /// <summary>Selects the kept entries of dy [N, U, P]; the result stays valid until the next call.</summary>
    public SparseGradient Sparsify(ReadOnlySpan<float> dy, int n, int units, int plane, WorkerPool pool)
    {
        if (n < 1 || units < 1 || plane < 1) throw new ArgumentException($"{_layerName}: gradient shape [{n}, {units}, {plane}] must be positive");
        if (dy.Length < (long)n * units * plane) throw new ArgumentException($"{_layerName}: gradient span too short");
        bool decay = Options.Decay > 0;
        if (decay) PrepareRunning(n, units, plane, channelPosition: Options.DecayShape == DecayShape.ChannelPosition);
        _scratch.Ensure(pool.ThreadCount, n * Math.Max(units, plane), units);
        Array.Clear(_scratch.SelectedByUnit, 0, units);
        long nonZero;
        fixed (float* pdy = dy, prun = _running.Span)
        {
            var job = new SelectionJob
            {
                Dy = pdy, Running = prun, N = n, Units = units, Plane = plane,
                Decay = (float)Options.Decay, UseRunning = decay, Scratch = _scratch,
            };
            nonZero = _policy.Select(ref job, pool);
        }
        if (Options.MassFraction is double fraction && !KeepAll)
        {
            // Trimmed entries are no longer kept: take them off each unit's count of selected entries.
            if (_trimmedByUnit.Length < units) _trimmedByUnit = new long[units];
            Array.Clear(_trimmedByUnit, 0, units);
            _trimming.Trim(_scratch.Result, dy, n, units, plane, Options.Selection, fraction, _trimmedByUnit);
            for (int u = 0; u < units; u++) _scratch.SelectedByUnit[u] -= _trimmedByUnit[u];
        }
        long selected = 0;
        for (int u = 0; u < units; u++) selected += _scratch.SelectedByUnit[u];
        var result = _scratch.Result;
        // When every entry is kept the backward must be the dense one (dense epochs of a schedule too); a
        // ratio of 1 trimmed by mass keeps a part of each unit, which is shifted like any other.
        if (Options.ZeroMean && !KeepsEveryEntry) ShiftToZeroMean(result);
        result.Selected = selected;
        result.NonZeroBefore = nonZero;
        return result;
    }

    /// <summary>Each unit's stored values minus their mean (summed in double): they then sum to zero up to rounding.</summary>
    private static void ShiftToZeroMean(SparseGradient gradient)
    {
        for (int u = 0; u < gradient.Units; u++)
        {
            int count = gradient.Counts[u];
            if (count == 0) continue;
            var values = gradient.Values.AsSpan(u * gradient.Capacity, count);
            double sum = 0;
            foreach (float v in values) sum += v;
            float mean = (float)(sum / count);
            for (int i = 0; i < values.Length; i++) values[i] -= mean;
        }
    }

    private void PrepareRunning(int n, int units, int plane, bool channelPosition)
    {
        if (channelPosition)
        {
            if (!_running.SameShape([units, plane])) _running.Reshape(units, plane).Clear();
            return;
        }
        // Full shape: one slot per batch position. A smaller last batch uses the first n slots and leaves
        // the others as they are; a larger batch grows the state, new slots starting from zero.
        if (_running.Rank == 3 && _running.Dim(1) == units && _running.Dim(2) == plane && _running.Dim(0) >= n) return;
        var old = _running.Rank == 3 && _running.Dim(1) == units && _running.Dim(2) == plane ? _running.Span.ToArray() : [];
        _running.Reshape(n, units, plane).Clear();
        old.CopyTo(_running.Span);
    }
}
