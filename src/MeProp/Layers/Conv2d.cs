using System.Runtime.CompilerServices;
using MeProp.Kernels;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Layers;

/// <summary>
/// 2-D convolution (cross-correlation, as PyTorch). x [N, C, H, W] -> y [N, OC, OH, OW];
/// weight [OC, C, KH, KW], bias [OC]; OH = (H + 2P - KH) / S + 1.
/// Forward: im2col into cols [N*OH*OW, C*KH*KW], then Y [N*OH*OW, OC] = cols · W^T, then
/// transposed into NCHW with the bias added. Backward: dW += dY^T · cols, db += sums of dY, and
/// dcols = dY · W scattered back by col2im into dx.
/// </summary>
public sealed unsafe class Conv2d : ILayer
{
    private readonly ComputeContext _compute;
    private readonly Tensor _cols = new(0);
    private readonly Tensor _rowMajorOutput = new(0);
    private readonly Tensor _output = new(0);
    private readonly Tensor _inputGradient = new(0);
    private ConvGeometry _geometry;

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
        int positions = g.Positions, k = g.PatchLength, oc = OutChannels;
        _cols.Reshape(positions, k);
        _rowMajorOutput.Reshape(positions, oc);
        _output.Reshape(g.N, oc, g.OH, g.OW);
        Im2Col.Forward(g, input.Span, _cols.Span, _compute.Pool);
        _compute.Gemm.Multiply(false, true, positions, oc, k, _cols.Span, k, Weight.Value.Span, k, _rowMajorOutput.Span, oc, false);
        fixed (float* rows = _rowMajorOutput.Storage, nchw = _output.Storage, bias = Bias.Value.Storage)
        {
            var job = new LayoutJob { Rows = rows, Nchw = nchw, Bias = bias, Channels = oc, Plane = g.OH * g.OW };
            _compute.Pool.Run(g.N, &RowsToNchwWithBias, &job);
        }
        return _output;
    }

    public Tensor? Backward(Tensor outputGradient)
    {
        var g = _geometry;
        int positions = g.Positions, k = g.PatchLength, oc = OutChannels, plane = g.OH * g.OW;
        if (!outputGradient.SameShape([g.N, oc, g.OH, g.OW]))
            throw new ArgumentException($"{Name}: gradient shape {outputGradient.ShapeText} does not match the output");
        // dY in the patch-row layout [positions, OC], reusing the forward's row-major output buffer.
        var dyRows = _rowMajorOutput;
        fixed (float* rows = dyRows.Storage, nchw = outputGradient.Storage)
        {
            var job = new LayoutJob { Rows = rows, Nchw = nchw, Channels = oc, Plane = plane };
            _compute.Pool.Run(g.N, &NchwToRows, &job);
        }
        AddChannelSums(outputGradient.Span, g.N, oc, plane, Bias.Gradient.Span);
        _compute.Gemm.Multiply(true, false, oc, k, positions, dyRows.Span, oc, _cols.Span, k, Weight.Gradient.Span, k, true);
        if (!ComputeInputGradient) return null;
        // cols is no longer needed once dW is formed, so dcols overwrites it.
        _compute.Gemm.Multiply(false, false, positions, k, oc, dyRows.Span, oc, Weight.Value.Span, k, _cols.Span, k, false);
        _inputGradient.Reshape(g.N, g.C, g.H, g.W);
        Im2Col.Backward(g, _cols.Span, _inputGradient.Span, _compute.Pool);
        return _inputGradient;
    }

    /// <summary>sums[c] += Σ over n and positions of t[n, c, position], accumulated in float64.</summary>
    internal static void AddChannelSums(ReadOnlySpan<float> t, int n, int channels, int plane, Span<float> sums)
    {
        for (int c = 0; c < channels; c++)
        {
            double sum = 0;
            for (int i = 0; i < n; i++)
            {
                var p = t.Slice((i * channels + c) * plane, plane);
                for (int q = 0; q < p.Length; q++) sum += p[q];
            }
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
        float* rows = j.Rows + (long)n * j.Plane * j.Channels;
        float* image = j.Nchw + (long)n * j.Plane * j.Channels;
        for (int c = 0; c < j.Channels; c++)
        {
            float b = j.Bias[c];
            float* dst = image + (long)c * j.Plane;
            for (int p = 0; p < j.Plane; p++) dst[p] = rows[(long)p * j.Channels + c] + b;
        }
    }

    /// <summary>One image: rows[n*plane + p, c] = nchw[n, c, p].</summary>
    private static void NchwToRows(void* args, int n)
    {
        ref LayoutJob j = ref Unsafe.AsRef<LayoutJob>(args);
        float* rows = j.Rows + (long)n * j.Plane * j.Channels;
        float* image = j.Nchw + (long)n * j.Plane * j.Channels;
        for (int p = 0; p < j.Plane; p++)
        {
            float* dst = rows + (long)p * j.Channels;
            for (int c = 0; c < j.Channels; c++) dst[c] = image[(long)c * j.Plane + p];
        }
    }
}
