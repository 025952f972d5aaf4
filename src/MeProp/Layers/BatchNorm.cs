using System.Globalization;
using System.Runtime.CompilerServices;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Layers;

/// <summary>
/// Batch normalisation over channels, as PyTorch's BatchNorm2d (x [N, C, H, W]) and BatchNorm1d
/// (x [N, C]); y has the shape of x. Legend: m = N*H*W (N for [N, C]) values per channel c,
/// xhat = (x - mean) / sqrt(var + eps), y = gamma[c]*xhat + beta[c]; gamma is "name.weight" [C] (init 1),
/// beta "name.bias" [C] (init 0).
/// Training: mean and biased variance (divided by m) of the batch normalise, and the running estimates
/// move as running = (1 - momentum)*running + momentum*batch_stat, with the unbiased variance
/// (divided by m - 1) for running_var. Inference: the running estimates normalise.
/// Backward (after a training Forward): dx = gamma/sqrt(var + eps) * (dy - mean(dy) - xhat*mean(dy*xhat)),
/// dgamma += Σ dy*xhat, dbeta += Σ dy, the sums over a channel's m values in float64.
/// Threads: one task per channel, each channel's sums in a fixed order, so results do not depend on timing.
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

    public BatchNorm(string name, int features, ComputeContext compute, float epsilon = 1e-5f, float momentum = 0.1f)
    {
        if (features < 1) throw new ArgumentException($"{name}: feature count must be positive, got {features}");
        if (!(epsilon > 0f)) throw new ArgumentException($"{name}: epsilon must be positive, got {epsilon}");
        if (!(momentum >= 0f && momentum <= 1f)) throw new ArgumentException($"{name}: momentum must be in [0, 1], got {momentum}");
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
    public float Epsilon { get; }
    public float Momentum { get; }

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
        fixed (float* x = input.Storage, y = _output.Storage, xhat = _normalized.Storage,
               gamma = Weight.Value.Storage, beta = Bias.Value.Storage,
               runningMean = RunningMean.Storage, runningVar = RunningVariance.Storage)
        fixed (double* inverseStd = _inverseStd)
        {
            var job = new Job
            {
                X = x, Y = y, Normalized = xhat, Gamma = gamma, Beta = beta,
                RunningMean = runningMean, RunningVar = runningVar, InverseStd = inverseStd,
                Batch = batch, Channels = Features, Plane = plane, Epsilon = Epsilon, Momentum = Momentum,
            };
            if (training) _compute.Pool.Run(Features, &ForwardTrainingChannel, &job);
            else _compute.Pool.Run(Features, &ForwardInferenceChannel, &job);
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
        fixed (float* dy = outputGradient.Storage, dx = _inputGradient.Storage, xhat = _normalized.Storage,
               gamma = Weight.Value.Storage, dgamma = Weight.Gradient.Storage, dbeta = Bias.Gradient.Storage)
        fixed (double* inverseStd = _inverseStd)
        {
            var job = new Job
            {
                Dy = dy, Dx = ComputeInputGradient ? dx : null, Normalized = xhat, Gamma = gamma,
                GammaGradient = dgamma, BetaGradient = dbeta, InverseStd = inverseStd,
                Batch = _batch, Channels = Features, Plane = _plane,
            };
            _compute.Pool.Run(Features, &BackwardChannel, &job);
        }
        return ComputeInputGradient ? _inputGradient : null;
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() =>
        [(Name + ".running_mean", RunningMean), (Name + ".running_var", RunningVariance)];

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

    /// <summary>Batch statistics of channel c, xhat and y for it, and its running estimates.</summary>
    private static void ForwardTrainingChannel(void* args, int c)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        long stride = (long)j.Channels * j.Plane;
        float* x0 = j.X + (long)c * j.Plane;
        double sum = 0;
        for (int n = 0; n < j.Batch; n++)
        {
            float* x = x0 + n * stride;
            for (int p = 0; p < j.Plane; p++) sum += x[p];
        }
        double count = (double)j.Batch * j.Plane;
        double mean = sum / count;
        double squares = 0;
        for (int n = 0; n < j.Batch; n++)
        {
            float* x = x0 + n * stride;
            for (int p = 0; p < j.Plane; p++)
            {
                double d = x[p] - mean;
                squares += d * d;
            }
        }
        double variance = squares / count;
        double inverseStd = 1.0 / Math.Sqrt(variance + j.Epsilon);
        j.InverseStd[c] = inverseStd;
        double gamma = j.Gamma[c], beta = j.Beta[c];
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = n * stride + (long)c * j.Plane;
            float* x = j.X + offset, xhat = j.Normalized + offset, y = j.Y + offset;
            for (int p = 0; p < j.Plane; p++)
            {
                double normalized = (x[p] - mean) * inverseStd;
                xhat[p] = (float)normalized;
                y[p] = (float)(gamma * normalized + beta);
            }
        }
        double keep = 1.0 - j.Momentum;
        j.RunningMean[c] = (float)(keep * j.RunningMean[c] + j.Momentum * mean);
        j.RunningVar[c] = (float)(keep * j.RunningVar[c] + j.Momentum * (squares / (count - 1)));
    }

    /// <summary>y = gamma*(x - running_mean)/sqrt(running_var + eps) + beta for channel c.</summary>
    private static void ForwardInferenceChannel(void* args, int c)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        double scale = j.Gamma[c] / Math.Sqrt(j.RunningVar[c] + j.Epsilon);
        double mean = j.RunningMean[c], beta = j.Beta[c];
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = ((long)n * j.Channels + c) * j.Plane;
            float* x = j.X + offset, y = j.Y + offset;
            for (int p = 0; p < j.Plane; p++) y[p] = (float)((x[p] - mean) * scale + beta);
        }
    }

    /// <summary>dgamma[c], dbeta[c] and (when Dx is set) dx for channel c.</summary>
    private static void BackwardChannel(void* args, int c)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        double sumDy = 0, sumDyXhat = 0;
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = ((long)n * j.Channels + c) * j.Plane;
            float* dy = j.Dy + offset, xhat = j.Normalized + offset;
            for (int p = 0; p < j.Plane; p++)
            {
                sumDy += dy[p];
                sumDyXhat += (double)dy[p] * xhat[p];
            }
        }
        j.BetaGradient[c] += (float)sumDy;
        j.GammaGradient[c] += (float)sumDyXhat;
        if (j.Dx == null) return;
        double count = (double)j.Batch * j.Plane;
        double meanDy = sumDy / count, meanDyXhat = sumDyXhat / count;
        double scale = j.Gamma[c] * j.InverseStd[c];
        for (int n = 0; n < j.Batch; n++)
        {
            long offset = ((long)n * j.Channels + c) * j.Plane;
            float* dy = j.Dy + offset, xhat = j.Normalized + offset, dx = j.Dx + offset;
            for (int p = 0; p < j.Plane; p++) dx[p] = (float)(scale * (dy[p] - meanDy - xhat[p] * meanDyXhat));
        }
    }
}
