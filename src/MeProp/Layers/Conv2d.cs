using System.Runtime.CompilerServices;
using MeProp.Kernels;
using MeProp.Sparsity;
using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// 2-D convolution (cross-correlation, as PyTorch). x [N, C, H, W] -> y [N, OC, OH, OW];
/// weight [OC, C, KH, KW], bias [OC]; OH = (H + 2P - KH) / S + 1.
/// Forward, when no backward will read the patch matrix (evaluation, or a sparse backward, which reads
/// the padded input), image by image: the image copied zero-padded and channels-last and convolved from
/// there (<see cref="DirectConvolution"/>: each patch is KH contiguous runs of KW·C values, met by the
/// weight in [KH, KW, C] order), then transposed into NCHW with the bias added. A dense training forward
/// instead writes the patch rows by im2col into cols [N*OH*OW, C*KH*KW] and multiplies them,
/// Y [N*OH*OW, OC] = cols · W^T, transposed into NCHW; the two sum over a patch in different orders, so
/// their outputs differ in the last bits. Dense backward: dW += dY^T · cols, db += sums of dY, and
/// dcols = dY · W scattered back by col2im into dx. With a <see cref="Sparsifier"/> (meProp-CNN) the
/// backward reads only the kept entries of dY: dW[c] += v·patch(position) per entry, the patch read from
/// the forward's padded channels-last copy of x, and dx is scattered directly from the weight
/// (channels-last, SIMD over C) without forming dcols. With <see cref="ExactSparsity"/> on, the training
/// forward is the image-by-image one and a backward without meProp runs the same sparse kernels on every
/// non-zero entry of dY when they are few (after ReLU and pooling they are); otherwise dW comes straight
/// from the padded channels-last input (<see cref="DirectWeightGradient"/>, no patch matrix) and dx from
/// the direct convolution of dY at stride 1. Exact sparsity also reaches the forward: at stride 1 an
/// input that is mostly zeros (ReLU and pooling again) is convolved from its non-zero entries alone.
/// </summary>
public sealed unsafe class Conv2d : IMePropLayer, IStatefulLayer
{
    private readonly ComputeContext _compute;
    private readonly Tensor _cols = new(0);
    /// <summary>Patch-row layout [N*OH*OW, OC]: a dense forward's output before its transpose, then its backward's dY.</summary>
    private readonly Tensor _rows = new(0);
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    // Scratch of the sparse backward, channels-last and 64-byte aligned (see AlignedBuffer).
    private readonly AlignedBuffer _weightHwc = new();
    private readonly AlignedBuffer _inputGradientScratch = new();
    private readonly AlignedBuffer _inputPaddedNhwc = new();
    // Forward image by image: the weight as [KH, KW, C, OC], and per worker one image's output rows.
    private readonly AlignedBuffer _transposedWeight = new();
    private readonly AlignedBuffer _imageRows = new();
    private int[] _paddedInputShape = [];
    private Tensor? _input;
    private ConvGeometry _geometry;
    /// <summary>True from a training Forward until the next Forward.</summary>
    private bool _trainingForward;
    /// <summary>True from a dense training Forward, which kept the batch's patches, until Backward overwrites them with dcols.</summary>
    private bool _colsHoldPatches;
    /// <summary>
    /// True from a Forward that left the padded channels-last input and (for dx) the [OC, KH, KW, C] weight
    /// behind: the image-by-image one, or a training forward from a sparse input.
    /// </summary>
    private bool _channelsLastCopiesCurrent;
    /// <summary>dL/dy's non-zero entries, when an exact sparse backward runs.</summary>
    private readonly SparseGradient _nonZeros = new();
    // The direct input gradient: the weight flipped and transposed to [KH, KW, OC, C], and per worker one
    // image's zero-bordered channels-last dY and its dx rows.
    private readonly AlignedBuffer _flippedWeight = new();
    private readonly AlignedBuffer _paddedOutputGradient = new();
    private readonly AlignedBuffer _inputGradientRows = new();
    private int[] _paddedOutputGradientShape = [];
    // A channel selection's dense products: the kept channels, their dY columns as rows, their weight rows.
    private int[] _keptChannels = [];
    private readonly AlignedBuffer _keptPlanes = new();
    private readonly AlignedBuffer _keptRows = new();
    private readonly AlignedBuffer _keptWeights = new();
    // A dense backward after the image-by-image forward: dY as rows [N*OH*OW, OC], and the weight
    // gradient's padded [OC, KH, KW*C] sums.
    private readonly AlignedBuffer _outputGradientRows = new();
    private readonly AlignedBuffer _weightGradientSums = new();
    // The forward from a sparse input: its non-zero entries, the weight flipped to [C, KH, KW, OC], and
    // per worker one output image, zero-bordered and channels-last.
    private readonly SparseGradient _inputNonZeros = new();
    private readonly AlignedBuffer _flippedInputWeight = new();
    private readonly AlignedBuffer _sparseForwardScratch = new();

    public Conv2d(string name, int inChannels, int outChannels, int kernelSize, int stride, int padding,
        ComputeContext compute, Rng initRng)
    {
        if (inChannels < 1 || outChannels < 1) throw new ArgumentException($"{name}: channel counts must be positive");
        if (kernelSize < 1 || stride < 1 || padding < 0) throw new ArgumentException($"{name}: kernel and stride must be positive, padding non-negative");
        Name = name;
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride;
        Padding = padding;
        _compute = compute;
        Weight = new Parameter(name + ".weight", outChannels, inChannels, kernelSize, kernelSize);
        Bias = new Parameter(name + ".bias", outChannels);
        int fanIn = inChannels * kernelSize * kernelSize;
        Initialization.PyTorchDefault(Weight.Value.Span, fanIn, initRng);
        Initialization.PyTorchDefault(Bias.Value.Span, fanIn, initRng);
        Parameters = [Weight, Bias];
    }

    /// <summary>Padding that keeps H x W at stride 1 ("same"); needs an odd kernel.</summary>
    public static int SamePadding(int kernelSize) => kernelSize % 2 == 1
        ? kernelSize / 2
        : throw new ArgumentException($"'same' padding needs an odd kernel size, got {kernelSize}");

    public string Name { get; }
    public int InChannels { get; }
    public int OutChannels { get; }
    public int KernelSize { get; }
    public int Stride { get; }
    public int Padding { get; }
    public Parameter Weight { get; }
    public Parameter Bias { get; }
    public IReadOnlyList<Parameter> Parameters { get; }
    public bool ComputeInputGradient { get; set; } = true;
    public GradientSparsifier? Sparsifier { get; set; }
    public BackwardCounters Counters { get; } = new();

    /// <summary>
    /// Whether a backward without <see cref="Sparsifier"/> runs the sparse kernels on dL/dy's non-zero
    /// entries. Unless Off, the training forward is the image-by-image one, which keeps what the sparse
    /// kernels and the direct weight gradient read.
    /// </summary>
    public ExactSparsity ExactSparsity { get; set; }

    public int[] OutputShape(ReadOnlySpan<int> inputShape)
    {
        var g = Geometry(inputShape);
        return [g.N, OutChannels, g.OH, g.OW];
    }

    private ConvGeometry Geometry(ReadOnlySpan<int> s)
    {
        if (s.Length != 4 || s[1] != InChannels)
            throw new ArgumentException($"{Name}: expected input [N, {InChannels}, H, W], got [{string.Join(", ", s.ToArray())}]");
        var g = new ConvGeometry(s[0], s[1], s[2], s[3], KernelSize, KernelSize, Stride, Padding);
        if (g.H + 2 * Padding < KernelSize || g.W + 2 * Padding < KernelSize)
            throw new ArgumentException($"{Name}: input {s[2]}x{s[3]} is smaller than the {KernelSize}x{KernelSize} kernel");
        return g;
    }

    public Tensor Forward(Tensor input, bool training)
    {
        var g = _geometry = Geometry(input.Shape);
        _input = input;
        _output.Reshape(g.N, OutChannels, g.OH, g.OW);
        _trainingForward = training;
        _colsHoldPatches = training && Sparsifier is null && ExactSparsity == ExactSparsity.Off;
        _channelsLastCopiesCurrent = !_colsHoldPatches;
        if (_colsHoldPatches) ForwardBatch(g);
        else if (SparseInputForwardApplies(g, input))
        {
            ForwardFromSparseInput(g, training);
            _channelsLastCopiesCurrent = training;
        }
        else ForwardByImage(g);
        return _output;
    }

    /// <summary>
    /// im2col of the whole batch into cols (kept for the backward), one GEMM, one transpose to NCHW. With
    /// the patch rows to be written anyway, one product over them measured faster in the training step
    /// than the image-by-image forward beside im2col (dense forward 2.47-2.75 against 2.79-3.17 ms).
    /// </summary>
    private void ForwardBatch(ConvGeometry g)
    {
        int positions = g.Positions, k = g.PatchLength, oc = OutChannels;
        _cols.Reshape(positions, k);
        _rows.Reshape(positions, oc);
        Im2Col.Forward(g, _input!.Span, _cols.Span, _compute.Pool);
        _compute.Gemm.Multiply(false, true, positions, oc, k, _cols.Span, k, Weight.Value.Span, k, _rows.Span, oc, false);
        fixed (float* rows = _rows.Span, nchw = _output.Span, bias = Bias.Value.Span)
        {
            var job = new LayoutJob { Rows = rows, Nchw = nchw, Bias = bias, Channels = oc, Plane = g.OH * g.OW };
            _compute.Pool.Run(g.N, &RowsToNchwWithBias, &job);
        }
    }

    /// <summary>
    /// Each worker takes whole images: the image padded channels-last, convolved from there by
    /// <see cref="DirectConvolution"/> against the transposed [KH, KW, C, OC] weight, then transposed to NCHW.
    /// </summary>
    private void ForwardByImage(ConvGeometry g)
    {
        int k = g.PatchLength, oc = OutChannels, plane = g.OH * g.OW;
        var weightHwc = FillWeightHwc();
        var padded = PaddedInput(g);
        var weightT = _transposedWeight.Span(oc * k + DirectConvolution.WeightSlack);
        var rows = _imageRows.Span(checked(_compute.Threads * plane * oc));
        fixed (float* whwc = weightHwc, wt = weightT, pp = padded, pr = rows, x = _input!.Span, y = _output.Span, bias = Bias.Value.Span)
        {
            ChannelLayout.PlanesToRows(whwc, k, wt, oc, k);
            weightT[(oc * k)..].Clear();
            var job = new ImageJob
            {
                Input = x, Padded = pp, WeightT = wt, Rows = pr, Output = y, Bias = bias,
                Geometry = g, Channels = oc, Workers = _compute.Threads,
            };
            _compute.Pool.Run(g.N, &ForwardImage, &job);
        }
    }

    /// <summary>
    /// Whether the forward takes <see cref="ForwardFromSparseInput"/>: exact sparsity on, stride 1 and a
    /// padding below the kernel size (as for <see cref="DirectInputGradient"/>), and, unless Always, at
    /// most <see cref="ExactSparsityThresholds.ConvolutionInput"/> of the input non-zero. The choice reads
    /// the input only, so a run stays deterministic.
    /// </summary>
    private bool SparseInputForwardApplies(ConvGeometry g, Tensor input)
    {
        if (ExactSparsity == ExactSparsity.Off || !DirectInputGradientApplies(g)) return false;
        return ExactSparsity == ExactSparsity.Always
            || NonZeroGradient.Count(input.Span) <= ExactSparsityThresholds.ConvolutionInput * input.Length;
    }

    /// <summary>
    /// The forward from the input's non-zero entries alone (after ReLU and pooling most are zero): at
    /// stride 1 the convolution is the transposed convolution of x with the flipped weight, so each
    /// non-zero x[n, c, y, x] scatters v·W[:, c, flipped taps] into the output, by the sparse kernels'
    /// scatter (<see cref="SparseBackward.ConvInputGradient"/> on a geometry whose input is y's grid and
    /// whose output is x's, padding KH-1-P), then the bias is added. A training forward also leaves the
    /// channels-last copies the backward reads, as <see cref="ForwardByImage"/> does.
    /// </summary>
    private void ForwardFromSparseInput(ConvGeometry g, bool training)
    {
        int oc = OutChannels, c = g.C, kh = g.KH, kw = g.KW, plane = g.OH * g.OW;
        NonZeroGradient.Gather(_input!.Span, g.N, c, g.H * g.W, _inputNonZeros, _compute.Pool);
        var transposed = new ConvGeometry(g.N, oc, g.OH, g.OW, kh, kw, 1, kh - 1 - g.Padding);
        var weight = Weight.Value.Span;
        var flipped = _flippedInputWeight.Span(c * kh * kw * oc);
        for (int o = 0; o < oc; o++)
            for (int ci = 0; ci < c; ci++)
                for (int y = 0; y < kh; y++)
                    for (int x = 0; x < kw; x++)
                        flipped[((ci * kh + y) * kw + x) * oc + o] = weight[((o * c + ci) * kh + (kh - 1 - y)) * kw + (kw - 1 - x)];
        var scratch = _sparseForwardScratch.Span(SparseBackward.ScratchLength(transposed, _compute.Threads));
        var output = _output.Span;
        SparseBackward.ConvInputGradient(_inputNonZeros, transposed, flipped, output, scratch, _compute.Pool);
        var bias = Bias.Value.Span;
        for (int n = 0; n < g.N; n++)
            for (int o = 0; o < oc; o++)
            {
                var map = output.Slice((n * oc + o) * plane, plane);
                System.Numerics.Tensors.TensorPrimitives.Add(map, bias[o], map);
            }
        if (!training) return;
        if (ComputeInputGradient) FillWeightHwc();
        var padded = PaddedInput(g);
        fixed (float* pp = padded, x = _input.Span)
        {
            var job = new ImageJob { Input = x, Padded = pp, Geometry = g };
            _compute.Pool.Run(g.N, &PadImage, &job);
        }
    }

    /// <summary>Image n's zero-bordered channels-last copy, for the backward.</summary>
    private static void PadImage(void* args, int n)
    {
        ref ImageJob j = ref Unsafe.AsRef<ImageJob>(args);
        var g = j.Geometry;
        FillPaddedImage(j.Input + (long)n * g.C * g.H * g.W, j.Padded + (long)n * (g.H + 2 * g.Padding) * (g.W + 2 * g.Padding) * g.C, g);
    }

    private struct ImageJob
    {
        public float* Input, Padded, WeightT, Rows, Output, Bias;
        public ConvGeometry Geometry;
        public int Channels, Workers;
    }

    /// <summary>Image n, on worker n % Workers (the pool's fixed partition) with that worker's scratch.</summary>
    private static void ForwardImage(void* args, int n)
    {
        ref ImageJob j = ref Unsafe.AsRef<ImageJob>(args);
        var g = j.Geometry;
        int oc = j.Channels, plane = g.OH * g.OW;
        float* padded = j.Padded + (long)n * (g.H + 2 * g.Padding) * (g.W + 2 * g.Padding) * g.C;
        FillPaddedImage(j.Input + (long)n * g.C * g.H * g.W, padded, g);
        float* rows = j.Rows + (long)(n % j.Workers) * plane * oc;
        DirectConvolution.ForwardImage(padded, g, j.WeightT, oc, rows);
        ChannelLayout.RowsToPlanes(rows, j.Output + (long)n * oc * plane, plane, oc, plane, j.Bias);
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        if (!_trainingForward)
            throw new InvalidOperationException($"{Name}: Backward needs a training Forward first");
        var g = _geometry;
        int positions = g.Positions, k = g.PatchLength, oc = OutChannels, plane = g.OH * g.OW;
        if (!outputGradient.SameShape([g.N, oc, g.OH, g.OW]))
            throw new ArgumentException($"{Name}: gradient shape {outputGradient.ShapeText} does not match the output");
        long denseMacs = (long)positions * k * oc * (ComputeInputGradient ? 2 : 1);
        if (Sparsifier is not null || ExactSparsity != ExactSparsity.Off)
        {
            if (!_channelsLastCopiesCurrent)
                throw new InvalidOperationException($"{Name}: meProp or exact sparsity was switched on between Forward and Backward");
            // A selection that keeps every entry (ratio 1: a schedule's dense epochs) ran only for its running
            // gradient and random stream: the backward below is a dense layer's, to the bit (with exact
            // sparsity on; off, a dense layer runs the patch-matrix products, equal to rounding). The counters
            // then record that selection with the multiply-adds the products below do.
            SparseGradient? everyEntry = null;
            if (Sparsifier is not null)
            {
                var selected = Sparsifier.Sparsify(outputGradient.Span, g.N, OutChannels, plane, _compute.Pool);
                if (Sparsifier.KeepsEveryEntry) everyEntry = selected;
                else if (Sparsifier.Options.Selection == SelectionPolicy.Channel && KeptChannelsAreDense(selected, out int kept))
                {
                    Counters.AddSparse(selected, (ComputeInputGradient ? 2 : 1) * (long)kept * positions * k, denseMacs);
                    return KeptChannelsBackward(outputGradient, selected, kept, g);
                }
                else
                {
                    Counters.AddSparse(selected, (ComputeInputGradient ? 2 : 1) * selected.Count * k, denseMacs);
                    return SparseBackwardPass(selected, g);
                }
            }
            if (ExactSparsity == ExactSparsity.Off)
            {
                if (everyEntry is null) Counters.AddDense(outputGradient.Span, denseMacs);
                else Counters.AddSparse(everyEntry, denseMacs, denseMacs);
                return ChannelsLastDenseBackward(outputGradient, g);
            }
            long nonZero = NonZeroGradient.Count(outputGradient.Span);
            if (ExactSparsity == ExactSparsity.Always || nonZero <= ExactSparsityThresholds.Convolution * outputGradient.Length)
            {
                NonZeroGradient.Gather(outputGradient.Span, g.N, OutChannels, plane, _nonZeros, _compute.Pool);
                long macs = (ComputeInputGradient ? 2 : 1) * nonZero * k;
                if (everyEntry is null) Counters.AddExact(_nonZeros, macs, denseMacs);
                else Counters.AddSparse(everyEntry, macs, denseMacs);
                return SparseBackwardPass(_nonZeros, g);
            }
            if (everyEntry is null) Counters.AddDense(outputGradient.Length, nonZero, denseMacs);
            else Counters.AddSparse(everyEntry, denseMacs, denseMacs);
            return ChannelsLastDenseBackward(outputGradient, g);
        }
        if (!_colsHoldPatches)
            throw new InvalidOperationException($"{Name}: Backward needs its own Forward first (the previous Backward used up the saved input patches, or meProp or exact sparsity was switched off in between)");
        Counters.AddDense(outputGradient.Span, denseMacs);
        // The forward kept the batch's patches: dY in the patch-row layout, then the products.
        var dyRows = _rows;
        dyRows.Reshape(positions, oc);
        fixed (float* rows = dyRows.Span, nchw = outputGradient.Span)
        {
            var job = new LayoutJob { Rows = rows, Nchw = nchw, Channels = oc, Plane = plane };
            _compute.Pool.Run(g.N, &NchwToRows, &job);
        }
        AddChannelSums(outputGradient.Span, g.N, oc, plane, Bias.Gradient.Span);
        _compute.Gemm.Multiply(true, false, oc, k, positions, dyRows.Span, oc, _cols.Span, k, Weight.Gradient.Span, k, true);
        if (!ComputeInputGradient) return null;
        // cols is no longer needed once dW is formed, so dcols overwrites it.
        _colsHoldPatches = false;
        _compute.Gemm.Multiply(false, false, positions, k, oc, dyRows.Span, oc, Weight.Value.Span, k, _cols.Span, k, false);
        _inputGradient.Reshape(g.N, g.C, g.H, g.W);
        Im2Col.Backward(g, _cols.Span, _inputGradient.Span, _compute.Pool);
        return _inputGradient;
    }

    /// <summary>
    /// A dense backward after the image-by-image forward (exact sparsity on, dY too dense for the sparse
    /// kernels): db, dW straight from the forward's padded channels-last input
    /// (<see cref="AddDirectWeightGradient"/>), and dx by the direct convolution at stride 1, else by
    /// col2im of dcols = dY · W. No patch matrix is formed unless that last product needs one to write.
    /// </summary>
    private Tensor? ChannelsLastDenseBackward(Tensor outputGradient, ConvGeometry g)
    {
        int positions = g.Positions, k = g.PatchLength, oc = OutChannels;
        var dyRows = _outputGradientRows.Span(checked(positions * oc + DirectWeightGradient.RowSlack));
        fixed (float* rows = dyRows, nchw = outputGradient.Span)
        {
            var job = new LayoutJob { Rows = rows, Nchw = nchw, Channels = oc, Plane = g.OH * g.OW };
            _compute.Pool.Run(g.N, &NchwToRows, &job);
        }
        AddChannelSums(outputGradient.Span, g.N, oc, g.OH * g.OW, Bias.Gradient.Span);
        AddDirectWeightGradient(dyRows, oc, [], g);
        if (!ComputeInputGradient) return null;
        _inputGradient.Reshape(g.N, g.C, g.H, g.W);
        if (DirectInputGradientApplies(g))
        {
            DirectInputGradient(outputGradient.Span, oc, Weight.Value.Span, g);
            return _inputGradient;
        }
        _cols.Reshape(positions, k);
        _compute.Gemm.Multiply(false, false, positions, k, oc, dyRows[..(positions * oc)], oc, Weight.Value.Span, k, _cols.Span, k, false);
        Im2Col.Backward(g, _cols.Span, _inputGradient.Span, _compute.Pool);
        return _inputGradient;
    }

    /// <summary>
    /// dW[targets[o]] += Σ over images and positions of dY[n, o, position] · patch(position) for o &lt; oc
    /// (targets empty: channel o itself), by <see cref="DirectWeightGradient"/> from the forward's padded
    /// channels-last input and dY as rows (<paramref name="dyRows"/>: [N·OH·OW, oc], then
    /// <see cref="DirectWeightGradient.RowSlack"/> floats). Task w takes tiles w, w + tasks, ... through the
    /// images in order, so all its tiles read an image while it is in cache; the sums do not depend on
    /// how many tasks there are.
    /// </summary>
    private void AddDirectWeightGradient(Span<float> dyRows, int oc, ReadOnlySpan<int> targets, ConvGeometry g)
    {
        // Sized for every output channel, so a channel selection's varying count never regrows it.
        var sums = _weightGradientSums.Span(DirectWeightGradient.SumsLength(g, OutChannels))[..DirectWeightGradient.SumsLength(g, oc)];
        sums.Clear();
        int tasks = Math.Min(_compute.Threads, DirectWeightGradient.Tiles(g, oc));
        fixed (float* pp = _inputPaddedNhwc.Span(SparseBackward.PaddedLength(g)), pr = dyRows, ps = sums)
        {
            var job = new WeightGradientJob { Padded = pp, Rows = pr, Sums = ps, Geometry = g, Channels = oc, Tasks = tasks };
            _compute.Pool.Run(tasks, &WeightGradientTask, &job);
        }
        // sums [o, ky, kx·C + c] (rows and runs padded) -> dW [o, c, ky, kx]
        var dW = Weight.Gradient.Span;
        int c = g.C, kh = g.KH, kw = g.KW, runPadded = DirectWeightGradient.RunPadded(g);
        for (int o = 0; o < oc; o++)
        {
            var source = sums.Slice(o * kh * runPadded);
            var target = dW.Slice((targets.IsEmpty ? o : targets[o]) * c * kh * kw);
            for (int ci = 0; ci < c; ci++)
                for (int y = 0; y < kh; y++)
                    for (int x = 0; x < kw; x++)
                        target[(ci * kh + y) * kw + x] += source[y * runPadded + x * c + ci];
        }
    }

    private struct WeightGradientJob
    {
        public float* Padded, Rows, Sums;
        public ConvGeometry Geometry;
        public int Channels, Tasks;
    }

    private static void WeightGradientTask(void* args, int task)
    {
        ref WeightGradientJob j = ref Unsafe.AsRef<WeightGradientJob>(args);
        var g = j.Geometry;
        long image = (long)(g.H + 2 * g.Padding) * (g.W + 2 * g.Padding) * g.C, rows = (long)g.OH * g.OW * j.Channels;
        for (int n = 0; n < g.N; n++)
            DirectWeightGradient.AddImage(j.Padded + n * image, g, j.Rows + n * rows, j.Channels, j.Sums, task, j.Tasks);
    }

    /// <summary>
    /// Whether dx can be the direct convolution of dY (<see cref="DirectInputGradient"/>): stride 1 and a
    /// padding below the kernel size, so that dY padded by KH-1-P convolves back to H x W.
    /// </summary>
    private static bool DirectInputGradientApplies(ConvGeometry g) =>
        g.Stride == 1 && g.KH == g.KW && g.Padding <= g.KH - 1;

    /// <summary>
    /// dx of a stride-1 convolution as a convolution itself: dx[n, c, y, x] = Σ over (ky, kx, o) of
    /// dYpad[n, o, y + ky, x + kx] · W[o, c, KH-1-ky, KW-1-kx], dY zero-padded by P' = KH-1-P. Each image
    /// goes channels-last into its worker's padded buffer, through <see cref="DirectConvolution"/> with the
    /// weight flipped and transposed to [KH, KW, OC, C], and back to NCHW. It replaces dcols = dY·W and
    /// col2im, whose product has only OC terms per value and whose patch matrix (KH·KW times the input)
    /// goes through memory twice.
    /// </summary>
    /// <param name="outputGradient">dY [N, oc, OH, OW]: the layer's, or a channel selection's kept channels.</param>
    /// <param name="oc">Channels of <paramref name="outputGradient"/>.</param>
    /// <param name="weight">The filters of those channels, [oc, C, KH, KW].</param>
    /// <param name="g">The layer's geometry for this batch.</param>
    private void DirectInputGradient(ReadOnlySpan<float> outputGradient, int oc, ReadOnlySpan<float> weight, ConvGeometry g)
    {
        int c = g.C, kh = g.KH, kw = g.KW, reach = kh - 1 - g.Padding;
        var transposed = new ConvGeometry(1, oc, g.OH, g.OW, kh, kw, 1, reach);
        int paddedLength = (g.OH + 2 * reach) * (g.OW + 2 * reach) * oc + SparseBackward.ReadSlack;
        var padded = _paddedOutputGradient.Span(checked(_compute.Threads * paddedLength));
        if (!_paddedOutputGradientShape.AsSpan().SequenceEqual([_compute.Threads, g.OH, g.OW, oc, reach]))
        {
            padded.Clear();
            _paddedOutputGradientShape = [_compute.Threads, g.OH, g.OW, oc, reach];
        }
        var flipped = _flippedWeight.Span(kh * kw * oc * c + DirectConvolution.WeightSlack);
        for (int o = 0; o < oc; o++)
            for (int ci = 0; ci < c; ci++)
                for (int y = 0; y < kh; y++)
                    for (int x = 0; x < kw; x++)
                        flipped[((y * kw + x) * oc + o) * c + ci] = weight[((o * c + ci) * kh + (kh - 1 - y)) * kw + (kw - 1 - x)];
        flipped[(kh * kw * oc * c)..].Clear();
        var rows = _inputGradientRows.Span(checked(_compute.Threads * g.H * g.W * c));
        fixed (float* dy = outputGradient, pp = padded, wf = flipped, pr = rows, dx = _inputGradient.Span)
        {
            var job = new TransposedJob
            {
                OutputGradient = dy, Padded = pp, FlippedWeight = wf, Rows = pr, InputGradient = dx,
                Geometry = g, Transposed = transposed, PaddedLength = paddedLength, Workers = _compute.Threads,
            };
            _compute.Pool.Run(g.N, &InputGradientImage, &job);
        }
    }

    private struct TransposedJob
    {
        public float* OutputGradient, Padded, FlippedWeight, Rows, InputGradient;
        public ConvGeometry Geometry, Transposed;
        public int PaddedLength, Workers;
    }

    /// <summary>Image n's dx, on worker n % Workers (the pool's fixed partition) with that worker's scratch.</summary>
    private static void InputGradientImage(void* args, int n)
    {
        ref TransposedJob j = ref Unsafe.AsRef<TransposedJob>(args);
        var g = j.Geometry;
        var t = j.Transposed;
        int worker = n % j.Workers, plane = g.OH * g.OW, oc = t.C, pw = t.W + 2 * t.Padding;
        float* padded = j.Padded + (long)worker * j.PaddedLength;
        float* dy = j.OutputGradient + (long)n * oc * plane;
        for (int y = 0; y < g.OH; y++)
            ChannelLayout.PlanesToRows(dy + y * g.OW, plane, padded + ((long)(y + t.Padding) * pw + t.Padding) * oc, oc, g.OW);
        float* rows = j.Rows + (long)worker * g.H * g.W * g.C;
        DirectConvolution.ForwardImage(padded, t, j.FlippedWeight, g.C, rows);
        ChannelLayout.RowsToPlanes(rows, j.InputGradient + (long)n * g.C * g.H * g.W, g.H * g.W, g.C, g.H * g.W, null);
    }

    /// <summary>
    /// Whether a channel selection's kept channels (those with a stored entry) are dense enough that
    /// products over them beat the sparse kernels: their non-zero share above the convolution threshold
    /// of <see cref="ExactSparsityThresholds"/>, as for a dense backward.
    /// </summary>
    private bool KeptChannelsAreDense(SparseGradient selected, out int kept)
    {
        kept = 0;
        for (int u = 0; u < selected.Units; u++) if (selected.Counts[u] > 0) kept++;
        return kept > 0 && selected.Count > ExactSparsityThresholds.Convolution * kept * (long)selected.PositionCount;
    }

    /// <summary>
    /// The backward of a channel selection as dense products over the kept channels only (ssProp's): dY's
    /// kept channels copied out and laid out as rows [N·OH·OW, kept], dW of the kept rows straight from
    /// the forward's padded channels-last input (<see cref="AddDirectWeightGradient"/>), their db, and dx
    /// from the kept filters (the direct convolution at stride 1, else col2im of dY_kept · W_kept);
    /// dropped channels add nothing.
    /// </summary>
    private Tensor? KeptChannelsBackward(Tensor outputGradient, SparseGradient selected, int kept, ConvGeometry g)
    {
        int positions = g.Positions, k = g.PatchLength, plane = g.OH * g.OW, oc = OutChannels;
        var channels = _keptChannels.Length >= kept ? _keptChannels : _keptChannels = new int[oc];
        for (int u = 0, j = 0; u < oc; u++) if (selected.Counts[u] > 0) channels[j++] = u;
        // The kept channels' planes, then as rows [N·OH·OW, kept].
        var dy = outputGradient.Span;
        // Scratch sized for every channel, so a varying kept count never regrows it mid-training.
        var planes = _keptPlanes.Span(checked(positions * oc))[..(positions * kept)];
        for (int n = 0; n < g.N; n++)
            for (int j = 0; j < kept; j++)
                dy.Slice((n * oc + channels[j]) * plane, plane).CopyTo(planes.Slice((n * kept + j) * plane, plane));
        var rows = _keptRows.Span(checked(positions * oc + DirectWeightGradient.RowSlack))[..(positions * kept + DirectWeightGradient.RowSlack)];
        fixed (float* pr = rows, pp = planes)
        {
            var job = new LayoutJob { Rows = pr, Nchw = pp, Channels = kept, Plane = plane };
            _compute.Pool.Run(g.N, &NchwToRows, &job);
        }
        AddDirectWeightGradient(rows, kept, channels.AsSpan(0, kept), g);
        var db = Bias.Gradient.Span;
        for (int j = 0; j < kept; j++)
        {
            double sum = 0;
            for (int n = 0; n < g.N; n++) sum += System.Numerics.Tensors.TensorPrimitives.Sum(planes.Slice((n * kept + j) * plane, plane));
            db[channels[j]] += (float)sum;
        }
        if (!ComputeInputGradient) return null;
        // dx from the kept filters alone: directly at stride 1, else dcols = dY_kept · W_kept and col2im.
        var weight = Weight.Value.Span;
        var keptWeights = _keptWeights.Span(kept * k);
        for (int j = 0; j < kept; j++) weight.Slice(channels[j] * k, k).CopyTo(keptWeights.Slice(j * k, k));
        _inputGradient.Reshape(g.N, g.C, g.H, g.W);
        if (DirectInputGradientApplies(g))
        {
            DirectInputGradient(planes, kept, keptWeights, g);
            return _inputGradient;
        }
        _cols.Reshape(positions, k);
        _compute.Gemm.Multiply(false, false, positions, k, kept, rows[..(positions * kept)], kept, keptWeights, k, _cols.Span, k, false);
        Im2Col.Backward(g, _cols.Span, _inputGradient.Span, _compute.Pool);
        return _inputGradient;
    }

    /// <summary>dW, db and dx from the kept entries of dY (a meProp selection, or every non-zero).</summary>
    private Tensor? SparseBackwardPass(SparseGradient sparse, ConvGeometry g)
    {
        int k = g.PatchLength;
        // Patches are read from the forward's channels-last, zero-padded input (it stays in cache; im2col
        // rows would be KH·KW times larger and mostly come from memory), the weight from its [OC, KH, KW, C] copy.
        var inputPadded = _inputPaddedNhwc.Span(SparseBackward.PaddedLength(g));
        if (!ComputeInputGradient)
        {
            SparseBackward.ConvGradients(sparse, g, inputPadded, Weight.Gradient.Span, Bias.Gradient.Span, [], [], [], _compute.Pool);
            return null;
        }
        var weightHwc = _weightHwc.Span(OutChannels * k);
        _inputGradient.Reshape(g.N, g.C, g.H, g.W);
        var scratch = _inputGradientScratch.Span(SparseBackward.ScratchLength(g, _compute.Threads));
        SparseBackward.ConvGradients(sparse, g, inputPadded, Weight.Gradient.Span, Bias.Gradient.Span, weightHwc, _inputGradient.Span, scratch, _compute.Pool);
        return _inputGradient;
    }

    /// <summary>[OC, C, KH, KW] -> [OC, KH, KW, C]: the same transpose as NCHW -> NHWC with OC as the batch.</summary>
    private Span<float> FillWeightHwc()
    {
        var weightHwc = _weightHwc.Span(OutChannels * InChannels * KernelSize * KernelSize);
        fixed (float* w = Weight.Value.Span, whwc = weightHwc)
        {
            var job = new LayoutJob { Rows = whwc, Nchw = w, Channels = InChannels, Plane = KernelSize * KernelSize };
            _compute.Pool.Run(OutChannels, &NchwToRows, &job);
        }
        return weightHwc;
    }

    /// <summary>Storage for the input as [N, H+2P, W+2P, C] with a zero border (cleared only when the shape changes).</summary>
    private Span<float> PaddedInput(ConvGeometry g)
    {
        int paddedH = g.H + 2 * g.Padding, paddedW = g.W + 2 * g.Padding;
        var padded = _inputPaddedNhwc.Span(SparseBackward.PaddedLength(g));
        if (!_paddedInputShape.AsSpan().SequenceEqual([g.N, paddedH, paddedW, g.C]))
        {
            padded.Clear();
            _paddedInputShape = [g.N, paddedH, paddedW, g.C];
        }
        return padded;
    }

    /// <summary>padded[y+P, x+P, c] = image[c, y, x] for one image; the border is left as it is (zero).</summary>
    private static void FillPaddedImage(float* image, float* padded, ConvGeometry g)
    {
        int pw = g.W + 2 * g.Padding, c = g.C;
        for (int y = 0; y < g.H; y++)
            ChannelLayout.PlanesToRows(image + y * g.W, g.H * g.W, padded + ((long)(y + g.Padding) * pw + g.Padding) * c, c, g.W);
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() => Sparsifier?.StateTensors(Name) ?? [];

    public IEnumerable<(string Key, string Value)> StateMetadata() => Sparsifier?.StateMetadata(Name) ?? [];

    public void RestoreMetadata(IReadOnlyDictionary<string, string> metadata) => Sparsifier?.RestoreMetadata(Name, metadata);

    /// <summary>
    /// sums[c] += Σ over n and positions of t[n, c, position]: each plane is summed with SIMD in float32
    /// (at most H·W terms), the planes' totals in float64.
    /// </summary>
    internal static void AddChannelSums(ReadOnlySpan<float> t, int n, int channels, int plane, Span<float> sums)
    {
        for (int c = 0; c < channels; c++)
        {
            double sum = 0;
            for (int i = 0; i < n; i++) sum += System.Numerics.Tensors.TensorPrimitives.Sum(t.Slice((i * channels + c) * plane, plane));
            sums[c] += (float)sum;
        }
    }

    private struct LayoutJob
    {
        public float* Rows, Nchw, Bias;
        public int Channels, Plane;
    }

    /// <summary>One image: nchw[n, c, p] = rows[n*plane + p, c] + bias[c].</summary>
    private static void RowsToNchwWithBias(void* args, int n)
    {
        ref LayoutJob j = ref Unsafe.AsRef<LayoutJob>(args);
        long offset = (long)n * j.Plane * j.Channels;
        ChannelLayout.RowsToPlanes(j.Rows + offset, j.Nchw + offset, j.Plane, j.Channels, j.Plane, j.Bias);
    }

    /// <summary>One image: rows[n*plane + p, c] = nchw[n, c, p].</summary>
    private static void NchwToRows(void* args, int n)
    {
        ref LayoutJob j = ref Unsafe.AsRef<LayoutJob>(args);
        long offset = (long)n * j.Plane * j.Channels;
        ChannelLayout.PlanesToRows(j.Nchw + offset, j.Plane, j.Rows + offset, j.Channels, j.Plane);
    }
}
