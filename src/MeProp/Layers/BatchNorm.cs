using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// Batch normalisation over channels, as PyTorch's BatchNorm2d (x [N, C, H, W]) and BatchNorm1d
/// (x [N, C]); y has the shape of x. Legend: m = N*H*W (N for [N, C]) values per channel c,
/// xhat = (x - mean) / sqrt(var + eps), y = gamma[c]*xhat + beta[c]; gamma is "name.weight" [C] (init 1),
/// beta "name.bias" [C] (init 0).
/// Training: mean and biased variance (divided by m) of the batch normalise, and the running estimates
/// move as running = (1 - momentum)*running + momentum*batch_stat, with the unbiased variance
/// (divided by m - 1) for running_var; a null momentum averages the batches' statistics cumulatively
/// (momentum 1/t at the t-th batch since <see cref="ResetRunningStatistics"/>), as PyTorch's momentum=None.
/// Inference: the running estimates normalise.
/// Backward (after a training Forward): dx = gamma/sqrt(var + eps) * (dy - mean(dy) - xhat*mean(dy*xhat)),
/// dgamma += Σ dy*xhat, dbeta += Σ dy, the sums over a channel's m values in float64 (for H*W &gt; 1, of
/// float32 vector partial sums over runs of at most 1024 values; see <see cref="Chunk"/>).
/// Threads: one task per channel (per block of 64 channels when H*W = 1), each channel's sums in a fixed
/// order, so results do not depend on timing or thread count.
/// </summary>
public sealed unsafe class BatchNorm : ILayer, IStatefulLayer
{
    private readonly ComputeContext _compute;
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    /// <summary>xhat of the last training Forward, kept for Backward.</summary>
    private readonly Tensor _normalized = new(0);
    /// <summary>1/sqrt(var + eps) per channel of the last training Forward.</summary>
    private readonly double[] _inverseStd;
    private int _batch, _plane;
    private bool _backwardReady;

    public BatchNorm(string name, int features, ComputeContext compute, float epsilon = 1e-5f, float? momentum = 0.1f)
    {
        if (features < 1) throw new ArgumentException($"{name}: feature count must be positive, got {features}");
        if (!(epsilon > 0f)) throw new ArgumentException($"{name}: epsilon must be positive, got {epsilon}");
        Name = name;
        Features = features;
        Epsilon = epsilon;
        Momentum = momentum;
        _compute = compute;
        _inverseStd = new double[features];
        Weight = new Parameter(name + ".weight", features);
        Bias = new Parameter(name + ".bias", features);
        Weight.Value.Span.Fill(1f);
        RunningMean = new Tensor(features);
        RunningVariance = new Tensor(features);
        RunningVariance.Span.Fill(1f);
        Parameters = [Weight, Bias];
    }

    public string Name { get; }

    /// <summary>Number of channels C (features of a [N, C] input).</summary>
    public int Features { get; }

    /// <summary>
    /// Values per channel in one example (H*W; 1 for [N, C]) where the network's shapes fix it (a network
    /// built from its description sets it), else null. At 1 a training batch needs two examples or more.
    /// </summary>
    public int? ValuesPerExample { get; init; }
    public float Epsilon { get; }

    /// <summary>Weight of each training batch's statistics in the running estimates, in [0, 1]; null for a cumulative average.</summary>
    public float? Momentum
    {
        get => _momentum;
        set => _momentum = value is null or (>= 0f and <= 1f) ? value
            : throw new ArgumentException($"{Name}: momentum must be in [0, 1] or null, got {value}");
    }

    private float? _momentum;

    /// <summary>gamma [C], "name.weight".</summary>
    public Parameter Weight { get; }

    /// <summary>beta [C], "name.bias".</summary>
    public Parameter Bias { get; }

    /// <summary>Running mean [C] ("name.running_mean"), init 0.</summary>
    public Tensor RunningMean { get; }

    /// <summary>Running unbiased variance [C] ("name.running_var"), init 1.</summary>
    public Tensor RunningVariance { get; }

    /// <summary>Number of training Forward calls so far (PyTorch's num_batches_tracked).</summary>
    public long NumBatchesTracked { get; private set; }

    /// <summary>Running mean 0, running variance 1, batch count 0: the state of a new layer (PyTorch's reset_running_stats).</summary>
    public void ResetRunningStatistics()
    {
        RunningMean.Span.Clear();
        RunningVariance.Span.Fill(1f);
        NumBatchesTracked = 0;
    }

    public IReadOnlyList<Parameter> Parameters { get; }
    public bool ComputeInputGradient { get; set; } = true;

    public int[] OutputShape(ReadOnlySpan<int> inputShape)
    {
        CheckShape(inputShape, out _, out _);
        return inputShape.ToArray();
    }

    private void CheckShape(ReadOnlySpan<int> s, out int batch, out int plane)
    {
        if (s.Length is not (2 or 4) || s[1] != Features)
            throw new ArgumentException($"{Name}: expected input [N, {Features}] or [N, {Features}, H, W], got [{string.Join(", ", s.ToArray())}]");
        batch = s[0];
        plane = s.Length == 4 ? s[2] * s[3] : 1;
    }

    public Tensor Forward(Tensor input, bool training)
    {
        CheckShape(input.Shape, out int batch, out int plane);
        _backwardReady = false;
        if (training && (long)batch * plane < 2)
            throw new ArgumentException($"{Name}: training needs more than one value per channel, got input {input.ShapeText}");
        _output.Reshape(input.Shape);
        if (training) _normalized.Reshape(input.Shape);
        fixed (float* x = input.Span, y = _output.Span, xhat = _normalized.Span,
               gamma = Weight.Value.Span, beta = Bias.Value.Span,
               runningMean = RunningMean.Span, runningVar = RunningVariance.Span)
        fixed (double* inverseStd = _inverseStd)
        {
            var job = new Job
            {
                X = x, Y = y, Normalized = xhat, Gamma = gamma, Beta = beta,
                RunningMean = runningMean, RunningVar = runningVar, InverseStd = inverseStd,
                Batch = batch, Channels = Features, Plane = plane, Epsilon = Epsilon,
                Momentum = _momentum ?? 1.0 / (NumBatchesTracked + 1),
            };
            if (training) _compute.Pool.Run(TaskCount(Features, plane), &ForwardTrainingChannel, &job);
            else _compute.Pool.Run(TaskCount(Features, plane), &ForwardInferenceChannel, &job);
        }
        if (training)
        {
            NumBatchesTracked++;
            _batch = batch;
            _plane = plane;
            _backwardReady = true;
        }
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        if (!_backwardReady)
            throw new InvalidOperationException($"{Name}: Backward must follow a training-mode Forward");
        if (!outputGradient.SameShape(_normalized.Shape))
            throw new ArgumentException($"{Name}: gradient shape {outputGradient.ShapeText} does not match the output {_normalized.ShapeText}");
        if (ComputeInputGradient) _inputGradient.Reshape(_normalized.Shape);
        fixed (float* dy = outputGradient.Span, dx = _inputGradient.Span, xhat = _normalized.Span,
               gamma = Weight.Value.Span, dgamma = Weight.Gradient.Span, dbeta = Bias.Gradient.Span)
        fixed (double* inverseStd = _inverseStd)
        {
            var job = new Job
            {
                Dy = dy, Dx = ComputeInputGradient ? dx : null, Normalized = xhat, Gamma = gamma,
                GammaGradient = dgamma, BetaGradient = dbeta, InverseStd = inverseStd,
                Batch = _batch, Channels = Features, Plane = _plane,
            };
            _compute.Pool.Run(TaskCount(Features, _plane), &BackwardChannel, &job);
        }
        return ComputeInputGradient ? _inputGradient : null;
    }

    /// <summary>Running statistics are part of the model: PyTorch's state_dict holds them as buffers.</summary>
    public bool IsModelState => true;

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() =>
        [(Name + ".running_mean", RunningMean), (Name + ".running_var", RunningVariance)];

    /// <summary>"name.num_batches_tracked", saved as an int64 tensor of shape [] as PyTorch does.</summary>
    public IEnumerable<(string Name, long Value)> StateCounters() => [(Name + ".num_batches_tracked", NumBatchesTracked)];

    public void RestoreCounter(string name, long value)
    {
        if (name != Name + ".num_batches_tracked") throw new ArgumentException($"{Name}: no counter '{name}'");
        if (value < 0) throw new ArgumentException($"checkpoint state '{name}' is negative: {value}");
        NumBatchesTracked = value;
    }

    /// <summary>
    /// The batch count as metadata ("name.num_batches_tracked"): where full training checkpoints keep it
    /// (their layout predates the int64 tensor; model-only files use <see cref="StateCounters"/>).
    /// </summary>
    public IEnumerable<(string Key, string Value)> StateMetadata() =>
        [(Name + ".num_batches_tracked", NumBatchesTracked.ToString(CultureInfo.InvariantCulture))];

    public void RestoreMetadata(IReadOnlyDictionary<string, string> metadata)
    {
        string key = Name + ".num_batches_tracked";
        if (!metadata.TryGetValue(key, out var text)) throw new ArgumentException($"checkpoint has no '{key}' state");
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long count))
            throw new ArgumentException($"checkpoint state '{key}' is not a non-negative integer: '{text}'");
        NumBatchesTracked = count;
    }

    private struct Job
    {
        public float* X, Y, Normalized, Gamma, Beta, RunningMean, RunningVar;
        public float* Dy, Dx, GammaGradient, BetaGradient;
        public double* InverseStd;
        public int Batch, Channels, Plane;
        public double Epsilon, Momentum;
    }

    /// <summary>Channels per task when plane = 1: each task reads contiguous runs of this many values per row.</summary>
    private const int ColumnBlock = 64;

    /// <summary>
    /// Longest run summed in float32 lanes before its total joins the float64 channel sum. The lanes of
    /// one run hold at most Chunk/64 terms each, so the float32 partial sums keep ~1e-7 relative
    /// accuracy whatever the plane size; the channel sum over all runs is float64 as before.
    /// </summary>
    private const int Chunk = 1024;

    private static int TaskCount(int channels, int plane) =>
        plane == 1 ? (channels + ColumnBlock - 1) / ColumnBlock : channels;

    // ---- Planes (x [N, C, H, W] with H*W > 1): one task per channel, N contiguous rows of `plane` values.
    // Reductions: float32 vector partial sums per run of at most Chunk values (four independent
    // accumulators), each run's total added into a float64 channel sum. Mean and variance take two passes
    // (the second over (x - mean)^2, from cache), so no cancellation; xhat and y are written in one pass.

    /// <summary>Batch statistics of channel c, xhat and y for it, and its running estimates.</summary>
    private static void ForwardTrainingChannel(void* args, int c)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        if (j.Plane == 1)
        {
            ForwardTrainingColumns(ref j, c * ColumnBlock);
            return;
        }
        long stride = (long)j.Channels * j.Plane;
        float* x0 = j.X + (long)c * j.Plane;
        int plane = j.Plane;
        double sum = 0;
        for (int n = 0; n < j.Batch; n++)
            for (int p = 0; p < plane; p += Chunk) sum += ChannelKernels.Sum(x0 + n * stride + p, Math.Min(Chunk, plane - p));
        double count = (double)j.Batch * plane;
        double mean = sum / count;
        // Deviations from the float32 mean: Σ(x - meanF)^2 = Σ(x - mean)^2 + m*(mean - meanF)^2 exactly,
        // as Σ(x - mean) = 0, so the tiny second term is taken back off.
        float meanF = (float)mean;
        double squares = 0;
        for (int n = 0; n < j.Batch; n++)
            for (int p = 0; p < plane; p += Chunk) squares += ChannelKernels.SumSquaredDeviations(x0 + n * stride + p, Math.Min(Chunk, plane - p), meanF);
        double shift = mean - meanF;
        squares = Math.Max(squares - count * shift * shift, 0.0);
        double variance = squares / count;
        double inverseStd = 1.0 / Math.Sqrt(variance + j.Epsilon);
        j.InverseStd[c] = inverseStd;
        // x - meanF is exact or nearly so for x near the mean; the float32 residual (mean - meanF) is then
        // taken off, so xhat keeps float32 accuracy relative to x - mean even when |mean| >> std.
        float scale = (float)inverseStd, residual = (float)shift, gamma = j.Gamma[c], beta = j.Beta[c];
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = n * stride + (long)c * plane;
            ChannelKernels.Normalize(j.X + offset, j.Normalized + offset, j.Y + offset, plane, meanF, residual, scale, gamma, beta);
        }
        double keep = 1.0 - j.Momentum;
        j.RunningMean[c] = (float)(keep * j.RunningMean[c] + j.Momentum * mean);
        j.RunningVar[c] = (float)(keep * j.RunningVar[c] + j.Momentum * (squares / (count - 1)));
    }

    /// <summary>y = gamma*(x - running_mean)/sqrt(running_var + eps) + beta for channel c.</summary>
    private static void ForwardInferenceChannel(void* args, int c)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        if (j.Plane == 1)
        {
            ForwardInferenceColumns(ref j, c * ColumnBlock);
            return;
        }
        double scale = j.Gamma[c] / Math.Sqrt(j.RunningVar[c] + j.Epsilon);
        float mean = j.RunningMean[c], beta = j.Beta[c];
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = ((long)n * j.Channels + c) * j.Plane;
            ChannelKernels.ScaleShift(j.X + offset, j.Y + offset, j.Plane, mean, (float)scale, beta);
        }
    }

    /// <summary>dgamma[c], dbeta[c] and (when Dx is set) dx for channel c.</summary>
    private static void BackwardChannel(void* args, int c)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        if (j.Plane == 1)
        {
            BackwardColumns(ref j, c * ColumnBlock);
            return;
        }
        int plane = j.Plane;
        double sumDy = 0, sumDyXhat = 0;
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = ((long)n * j.Channels + c) * plane;
            for (int p = 0; p < plane; p += Chunk)
            {
                ChannelKernels.SumProducts(j.Dy + offset + p, j.Normalized + offset + p, Math.Min(Chunk, plane - p), out double dySum, out double productSum);
                sumDy += dySum;
                sumDyXhat += productSum;
            }
        }
        j.BetaGradient[c] += (float)sumDy;
        j.GammaGradient[c] += (float)sumDyXhat;
        if (j.Dx == null) return;
        double count = (double)j.Batch * plane;
        float meanDy = (float)(sumDy / count), meanDyXhat = (float)(sumDyXhat / count);
        float scale = (float)(j.Gamma[c] * j.InverseStd[c]);
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = ((long)n * j.Channels + c) * plane;
            ChannelKernels.InputGradient(j.Dy + offset, j.Normalized + offset, j.Dx + offset, plane, meanDy, meanDyXhat, scale);
        }
    }

    // ---- Columns (x [N, C], or H = W = 1): one task per block of ColumnBlock channels, walking the N rows
    // and reading each row's block contiguously. Sums over only N values per channel, kept in float64
    // lanes in the original order (n = 0..N-1), and every step computed in float64 as in the scalar
    // formulas, so these results are the same bits as the plain per-channel loop.

    private static void ForwardTrainingColumns(ref Job j, int c0)
    {
        int width = Math.Min(ColumnBlock, j.Channels - c0);
        double* mean = stackalloc double[ColumnBlock];
        double* squares = stackalloc double[ColumnBlock];
        double* inverseStd = stackalloc double[ColumnBlock];
        double* gamma = stackalloc double[ColumnBlock];
        double* beta = stackalloc double[ColumnBlock];
        new Span<double>(mean, width).Clear();
        new Span<double>(squares, width).Clear();
        for (int n = 0; n < j.Batch; n++) ChannelKernels.AddColumns(j.X + (long)n * j.Channels + c0, mean, width);
        double count = j.Batch;
        for (int k = 0; k < width; k++) mean[k] /= count;
        for (int n = 0; n < j.Batch; n++) ChannelKernels.AddSquaredDeviationColumns(j.X + (long)n * j.Channels + c0, mean, squares, width);
        double keep = 1.0 - j.Momentum;
        for (int k = 0; k < width; k++)
        {
            int c = c0 + k;
            double variance = squares[k] / count;
            inverseStd[k] = 1.0 / Math.Sqrt(variance + j.Epsilon);
            j.InverseStd[c] = inverseStd[k];
            gamma[k] = j.Gamma[c];
            beta[k] = j.Beta[c];
            j.RunningMean[c] = (float)(keep * j.RunningMean[c] + j.Momentum * mean[k]);
            j.RunningVar[c] = (float)(keep * j.RunningVar[c] + j.Momentum * (squares[k] / (count - 1)));
        }
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = (long)n * j.Channels + c0;
            ChannelKernels.NormalizeColumns(j.X + offset, j.Normalized + offset, j.Y + offset, mean, inverseStd, gamma, beta, width);
        }
    }

    private static void ForwardInferenceColumns(ref Job j, int c0)
    {
        int width = Math.Min(ColumnBlock, j.Channels - c0);
        double* mean = stackalloc double[ColumnBlock];
        double* scale = stackalloc double[ColumnBlock];
        double* beta = stackalloc double[ColumnBlock];
        for (int k = 0; k < width; k++)
        {
            int c = c0 + k;
            scale[k] = j.Gamma[c] / Math.Sqrt(j.RunningVar[c] + j.Epsilon);
            mean[k] = j.RunningMean[c];
            beta[k] = j.Beta[c];
        }
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = (long)n * j.Channels + c0;
            ChannelKernels.ScaleShiftColumns(j.X + offset, j.Y + offset, mean, scale, beta, width);
        }
    }

    private static void BackwardColumns(ref Job j, int c0)
    {
        int width = Math.Min(ColumnBlock, j.Channels - c0);
        double* sumDy = stackalloc double[ColumnBlock];
        double* sumDyXhat = stackalloc double[ColumnBlock];
        double* scale = stackalloc double[ColumnBlock];
        new Span<double>(sumDy, width).Clear();
        new Span<double>(sumDyXhat, width).Clear();
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = (long)n * j.Channels + c0;
            ChannelKernels.AddProductColumns(j.Dy + offset, j.Normalized + offset, sumDy, sumDyXhat, width);
        }
        double count = j.Batch;
        for (int k = 0; k < width; k++)
        {
            int c = c0 + k;
            j.BetaGradient[c] += (float)sumDy[k];
            j.GammaGradient[c] += (float)sumDyXhat[k];
            sumDy[k] /= count;       // now mean(dy)
            sumDyXhat[k] /= count;   // now mean(dy*xhat)
            scale[k] = j.Gamma[c] * j.InverseStd[c];
        }
        if (j.Dx == null) return;
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = (long)n * j.Channels + c0;
            ChannelKernels.InputGradientColumns(j.Dy + offset, j.Normalized + offset, j.Dx + offset, sumDy, sumDyXhat, scale, width);
        }
    }

    /// <summary>
    /// The vector loops. Row kernels (float32, used on planes): Vector512 with four accumulators where
    /// accelerated, else Vector256 with four, then a scalar tail. Column kernels (float64, used on
    /// [N, C]): Vector256 of four doubles per step where accelerated, else scalar, the same arithmetic either way.
    /// </summary>
    private static class ChannelKernels
    {
        /// <summary>Σ x[i], i &lt; len: float32 vector lanes, the scalar tail (all of it without SIMD) in float64.</summary>
        public static double Sum(float* x, int len)
        {
            int i = 0;
            float total = 0f;
            if (Vector512.IsHardwareAccelerated && len >= 16)
            {
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (; i + 64 <= len; i += 64)
                {
                    a0 += Vector512.Load(x + i);
                    a1 += Vector512.Load(x + i + 16);
                    a2 += Vector512.Load(x + i + 32);
                    a3 += Vector512.Load(x + i + 48);
                }
                for (; i + 16 <= len; i += 16) a0 += Vector512.Load(x + i);
                total = Vector512.Sum((a0 + a1) + (a2 + a3));
            }
            else if (Vector256.IsHardwareAccelerated && len >= 8)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (; i + 32 <= len; i += 32)
                {
                    a0 += Vector256.Load(x + i);
                    a1 += Vector256.Load(x + i + 8);
                    a2 += Vector256.Load(x + i + 16);
                    a3 += Vector256.Load(x + i + 24);
                }
                for (; i + 8 <= len; i += 8) a0 += Vector256.Load(x + i);
                total = Vector256.Sum((a0 + a1) + (a2 + a3));
            }
            double tail = 0;
            for (; i < len; i++) tail += x[i];
            return total + tail;
        }

        /// <summary>Σ (x[i] - mean)^2, i &lt; len, as above.</summary>
        public static double SumSquaredDeviations(float* x, int len, float mean)
        {
            int i = 0;
            float total = 0f;
            if (Vector512.IsHardwareAccelerated && len >= 16)
            {
                var m = Vector512.Create(mean);
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (; i + 64 <= len; i += 64)
                {
                    var d0 = Vector512.Load(x + i) - m;
                    var d1 = Vector512.Load(x + i + 16) - m;
                    var d2 = Vector512.Load(x + i + 32) - m;
                    var d3 = Vector512.Load(x + i + 48) - m;
                    a0 = Vector512.FusedMultiplyAdd(d0, d0, a0);
                    a1 = Vector512.FusedMultiplyAdd(d1, d1, a1);
                    a2 = Vector512.FusedMultiplyAdd(d2, d2, a2);
                    a3 = Vector512.FusedMultiplyAdd(d3, d3, a3);
                }
                for (; i + 16 <= len; i += 16)
                {
                    var d = Vector512.Load(x + i) - m;
                    a0 = Vector512.FusedMultiplyAdd(d, d, a0);
                }
                total = Vector512.Sum((a0 + a1) + (a2 + a3));
            }
            else if (Vector256.IsHardwareAccelerated && len >= 8)
            {
                var m = Vector256.Create(mean);
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (; i + 32 <= len; i += 32)
                {
                    var d0 = Vector256.Load(x + i) - m;
                    var d1 = Vector256.Load(x + i + 8) - m;
                    var d2 = Vector256.Load(x + i + 16) - m;
                    var d3 = Vector256.Load(x + i + 24) - m;
                    a0 = Vector256.FusedMultiplyAdd(d0, d0, a0);
                    a1 = Vector256.FusedMultiplyAdd(d1, d1, a1);
                    a2 = Vector256.FusedMultiplyAdd(d2, d2, a2);
                    a3 = Vector256.FusedMultiplyAdd(d3, d3, a3);
                }
                for (; i + 8 <= len; i += 8)
                {
                    var d = Vector256.Load(x + i) - m;
                    a0 = Vector256.FusedMultiplyAdd(d, d, a0);
                }
                total = Vector256.Sum((a0 + a1) + (a2 + a3));
            }
            double tail = 0;
            for (; i < len; i++)
            {
                double d = x[i] - mean;
                tail += d * d;
            }
            return total + tail;
        }

        /// <summary>Σ dy[i] and Σ dy[i]*xhat[i], i &lt; len, as above.</summary>
        public static void SumProducts(float* dy, float* xhat, int len, out double dySum, out double productSum)
        {
            int i = 0;
            float s = 0f, sp = 0f;
            if (Vector512.IsHardwareAccelerated && len >= 16)
            {
                Vector512<float> s0 = default, s1 = default, p0 = default, p1 = default;
                for (; i + 32 <= len; i += 32)
                {
                    var g0 = Vector512.Load(dy + i);
                    var g1 = Vector512.Load(dy + i + 16);
                    s0 += g0;
                    s1 += g1;
                    p0 = Vector512.FusedMultiplyAdd(g0, Vector512.Load(xhat + i), p0);
                    p1 = Vector512.FusedMultiplyAdd(g1, Vector512.Load(xhat + i + 16), p1);
                }
                for (; i + 16 <= len; i += 16)
                {
                    var g = Vector512.Load(dy + i);
                    s0 += g;
                    p0 = Vector512.FusedMultiplyAdd(g, Vector512.Load(xhat + i), p0);
                }
                s = Vector512.Sum(s0 + s1);
                sp = Vector512.Sum(p0 + p1);
            }
            else if (Vector256.IsHardwareAccelerated && len >= 8)
            {
                Vector256<float> s0 = default, s1 = default, p0 = default, p1 = default;
                for (; i + 16 <= len; i += 16)
                {
                    var g0 = Vector256.Load(dy + i);
                    var g1 = Vector256.Load(dy + i + 8);
                    s0 += g0;
                    s1 += g1;
                    p0 = Vector256.FusedMultiplyAdd(g0, Vector256.Load(xhat + i), p0);
                    p1 = Vector256.FusedMultiplyAdd(g1, Vector256.Load(xhat + i + 8), p1);
                }
                for (; i + 8 <= len; i += 8)
                {
                    var g = Vector256.Load(dy + i);
                    s0 += g;
                    p0 = Vector256.FusedMultiplyAdd(g, Vector256.Load(xhat + i), p0);
                }
                s = Vector256.Sum(s0 + s1);
                sp = Vector256.Sum(p0 + p1);
            }
            double ts = 0, tp = 0;
            for (; i < len; i++)
            {
                ts += dy[i];
                tp += (double)dy[i] * xhat[i];
            }
            dySum = s + ts;
            productSum = sp + tp;
        }

        /// <summary>xhat = ((x - mean) - residual)*scale, y = gamma*xhat + beta, float32.</summary>
        public static void Normalize(float* x, float* xhat, float* y, int len, float mean, float residual, float scale, float gamma, float beta)
        {
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> m = Vector512.Create(mean), r = Vector512.Create(residual), s = Vector512.Create(scale);
                Vector512<float> g = Vector512.Create(gamma), b = Vector512.Create(beta);
                for (; i + 16 <= len; i += 16)
                {
                    var h = (Vector512.Load(x + i) - m - r) * s;
                    h.Store(xhat + i);
                    Vector512.FusedMultiplyAdd(g, h, b).Store(y + i);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> m = Vector256.Create(mean), r = Vector256.Create(residual), s = Vector256.Create(scale);
                Vector256<float> g = Vector256.Create(gamma), b = Vector256.Create(beta);
                for (; i + 8 <= len; i += 8)
                {
                    var h = (Vector256.Load(x + i) - m - r) * s;
                    h.Store(xhat + i);
                    Vector256.FusedMultiplyAdd(g, h, b).Store(y + i);
                }
            }
            for (; i < len; i++)
            {
                float h = (x[i] - mean - residual) * scale;
                xhat[i] = h;
                y[i] = MathF.FusedMultiplyAdd(gamma, h, beta);
            }
        }

        /// <summary>y = (x - mean)*scale + beta, float32.</summary>
        public static void ScaleShift(float* x, float* y, int len, float mean, float scale, float beta)
        {
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> m = Vector512.Create(mean), s = Vector512.Create(scale), b = Vector512.Create(beta);
                for (; i + 16 <= len; i += 16) Vector512.FusedMultiplyAdd(Vector512.Load(x + i) - m, s, b).Store(y + i);
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> m = Vector256.Create(mean), s = Vector256.Create(scale), b = Vector256.Create(beta);
                for (; i + 8 <= len; i += 8) Vector256.FusedMultiplyAdd(Vector256.Load(x + i) - m, s, b).Store(y + i);
            }
            for (; i < len; i++) y[i] = MathF.FusedMultiplyAdd(x[i] - mean, scale, beta);
        }

        /// <summary>dx = scale*(dy - meanDy - xhat*meanDyXhat), float32.</summary>
        public static void InputGradient(float* dy, float* xhat, float* dx, int len, float meanDy, float meanDyXhat, float scale)
        {
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> md = Vector512.Create(meanDy), mp = Vector512.Create(-meanDyXhat), s = Vector512.Create(scale);
                for (; i + 16 <= len; i += 16)
                    (Vector512.FusedMultiplyAdd(Vector512.Load(xhat + i), mp, Vector512.Load(dy + i) - md) * s).Store(dx + i);
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> md = Vector256.Create(meanDy), mp = Vector256.Create(-meanDyXhat), s = Vector256.Create(scale);
                for (; i + 8 <= len; i += 8)
                    (Vector256.FusedMultiplyAdd(Vector256.Load(xhat + i), mp, Vector256.Load(dy + i) - md) * s).Store(dx + i);
            }
            for (; i < len; i++) dx[i] = MathF.FusedMultiplyAdd(xhat[i], -meanDyXhat, dy[i] - meanDy) * scale;
        }

        // Column kernels: row is one row's block of `width` channels; per-channel float64 values in a[k].

        /// <summary>sum[k] += row[k].</summary>
        public static void AddColumns(float* row, double* sum, int width)
        {
            int k = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                for (; k + 8 <= width; k += 8)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Load(row + k));
                    (Vector256.Load(sum + k) + lo).Store(sum + k);
                    (Vector256.Load(sum + k + 4) + hi).Store(sum + k + 4);
                }
            }
            for (; k < width; k++) sum[k] += row[k];
        }

        /// <summary>squares[k] += (row[k] - mean[k])^2.</summary>
        public static void AddSquaredDeviationColumns(float* row, double* mean, double* squares, int width)
        {
            int k = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                for (; k + 8 <= width; k += 8)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Load(row + k));
                    var d0 = lo - Vector256.Load(mean + k);
                    var d1 = hi - Vector256.Load(mean + k + 4);
                    (Vector256.Load(squares + k) + d0 * d0).Store(squares + k);
                    (Vector256.Load(squares + k + 4) + d1 * d1).Store(squares + k + 4);
                }
            }
            for (; k < width; k++)
            {
                double d = row[k] - mean[k];
                squares[k] += d * d;
            }
        }

        /// <summary>xhat[k] = (x[k] - mean[k])*inverseStd[k], y[k] = gamma[k]*that + beta[k], in float64, stored as float32.</summary>
        public static void NormalizeColumns(float* x, float* xhat, float* y, double* mean, double* inverseStd, double* gamma, double* beta, int width)
        {
            int k = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                for (; k + 8 <= width; k += 8)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Load(x + k));
                    var h0 = (lo - Vector256.Load(mean + k)) * Vector256.Load(inverseStd + k);
                    var h1 = (hi - Vector256.Load(mean + k + 4)) * Vector256.Load(inverseStd + k + 4);
                    Vector256.Narrow(h0, h1).Store(xhat + k);
                    var y0 = Vector256.Load(gamma + k) * h0 + Vector256.Load(beta + k);
                    var y1 = Vector256.Load(gamma + k + 4) * h1 + Vector256.Load(beta + k + 4);
                    Vector256.Narrow(y0, y1).Store(y + k);
                }
            }
            for (; k < width; k++)
            {
                double normalized = (x[k] - mean[k]) * inverseStd[k];
                xhat[k] = (float)normalized;
                y[k] = (float)(gamma[k] * normalized + beta[k]);
            }
        }

        /// <summary>y[k] = (x[k] - mean[k])*scale[k] + beta[k], in float64, stored as float32.</summary>
        public static void ScaleShiftColumns(float* x, float* y, double* mean, double* scale, double* beta, int width)
        {
            int k = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                for (; k + 8 <= width; k += 8)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Load(x + k));
                    var y0 = (lo - Vector256.Load(mean + k)) * Vector256.Load(scale + k) + Vector256.Load(beta + k);
                    var y1 = (hi - Vector256.Load(mean + k + 4)) * Vector256.Load(scale + k + 4) + Vector256.Load(beta + k + 4);
                    Vector256.Narrow(y0, y1).Store(y + k);
                }
            }
            for (; k < width; k++) y[k] = (float)((x[k] - mean[k]) * scale[k] + beta[k]);
        }

        /// <summary>sumDy[k] += dy[k], sumDyXhat[k] += dy[k]*xhat[k], in float64.</summary>
        public static void AddProductColumns(float* dy, float* xhat, double* sumDy, double* sumDyXhat, int width)
        {
            int k = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                for (; k + 8 <= width; k += 8)
                {
                    var (g0, g1) = Vector256.Widen(Vector256.Load(dy + k));
                    var (h0, h1) = Vector256.Widen(Vector256.Load(xhat + k));
                    (Vector256.Load(sumDy + k) + g0).Store(sumDy + k);
                    (Vector256.Load(sumDy + k + 4) + g1).Store(sumDy + k + 4);
                    (Vector256.Load(sumDyXhat + k) + g0 * h0).Store(sumDyXhat + k);
                    (Vector256.Load(sumDyXhat + k + 4) + g1 * h1).Store(sumDyXhat + k + 4);
                }
            }
            for (; k < width; k++)
            {
                sumDy[k] += dy[k];
                sumDyXhat[k] += (double)dy[k] * xhat[k];
            }
        }

        /// <summary>dx[k] = scale[k]*(dy[k] - meanDy[k] - xhat[k]*meanDyXhat[k]), in float64, stored as float32.</summary>
        public static void InputGradientColumns(float* dy, float* xhat, float* dx, double* meanDy, double* meanDyXhat, double* scale, int width)
        {
            int k = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                for (; k + 8 <= width; k += 8)
                {
                    var (g0, g1) = Vector256.Widen(Vector256.Load(dy + k));
                    var (h0, h1) = Vector256.Widen(Vector256.Load(xhat + k));
                    var d0 = Vector256.Load(scale + k) * (g0 - Vector256.Load(meanDy + k) - h0 * Vector256.Load(meanDyXhat + k));
                    var d1 = Vector256.Load(scale + k + 4) * (g1 - Vector256.Load(meanDy + k + 4) - h1 * Vector256.Load(meanDyXhat + k + 4));
                    Vector256.Narrow(d0, d1).Store(dx + k);
                }
            }
            for (; k < width; k++) dx[k] = (float)(scale[k] * (dy[k] - meanDy[k] - xhat[k] * meanDyXhat[k]));
        }
    }
}
