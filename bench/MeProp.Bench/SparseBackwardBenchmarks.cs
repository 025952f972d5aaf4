using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using MeProp.Kernels;
using MeProp.Layers;
using MeProp.Sparsity;

namespace MeProp.Bench;

/// <summary>
/// meProp backward of one layer against its dense GEMMs (the baseline of each category, so the Ratio
/// column reads sparse/dense directly).
/// conv2: x [10, 32, 14, 14], 64 channels, 5x5 pad 2, so dY [10, 64, 14, 14], cols [1960, 800].
///   Sparse = per-channel Sparsify + ConvGradients (dW, db and dx in one run), from the zero-padded
///   channels-last input and weight as the layer uses them (those two layout copies not included;
///   dx comes out in NCHW).
///   Dense  = GEMM dW += dY^T·cols and GEMM dcols = dY·W (col2im not included).
/// fc1: x [10, 3136], 1024 outputs, dY [10, 1024].
///   Sparse = per-example Sparsify + WeightGradient + RowInputGradient. Dense = GEMM dW += dY^T·x, dx = dY·W.
/// Four seeded gradients (85% zeros) are cycled, so with decay the running average differs from |dY|.
/// The dense rows do not depend on Ratio or Decay; they repeat so every row has its own ratio.
/// </summary>
[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class SparseBackwardBenchmarks
{
    private static readonly ConvGeometry Conv2 = new(10, 32, 14, 14, 5, 5, 1, 2);
    private const int Conv2Channels = 64;
    private const int Batch = 10, Fc1Outputs = 1024, Fc1Inputs = 3136;
    private const int Steps = 4;

    [Params(0.05, 0.08, 0.10)]
    public double Ratio { get; set; }

    [Params(0.0, 0.6)]
    public double Decay { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    private ComputeContext _compute = null!;
    private GradientSparsifier _convSparsifier = null!, _fcSparsifier = null!;
    private int _step;

    // conv2: dY in NCHW (what the sparsifier reads) and as rows [positions, channels] (what the GEMMs read).
    private float[][] _convDy = [], _convDyRows = [];
    private float[] _cols = [], _convW = [], _convWHwc = [], _convDw = [], _convDb = [], _convXPadded = [], _convDx = [], _convDxScratch = [], _dcols = [];
    // fc1
    private float[][] _fcDy = [];
    private float[] _fcX = [], _fcW = [], _fcDw = [], _fcDb = [], _fcDx = [];

    [GlobalSetup]
    public void Setup()
    {
        _compute = new ComputeContext(Threads);
        var g = Conv2;
        int plane = g.OH * g.OW, positions = g.Positions, patch = g.PatchLength;
        _convDy = new float[Steps][];
        _convDyRows = new float[Steps][];
        _fcDy = new float[Steps][];
        for (int s = 0; s < Steps; s++)
        {
            _convDy[s] = BenchData.GradientLike(10 + (ulong)s, g.N * Conv2Channels * plane);
            _convDyRows[s] = NchwToRows(_convDy[s], g.N, Conv2Channels, plane);
            _fcDy[s] = BenchData.GradientLike(20 + (ulong)s, Batch * Fc1Outputs);
        }
        _cols = BenchData.Normal(1, positions * patch);
        _convW = BenchData.Normal(2, Conv2Channels * patch);
        _convWHwc = BenchData.Normal(3, Conv2Channels * patch);
        _convDw = new float[Conv2Channels * patch];
        _convDb = new float[Conv2Channels];
        _convXPadded = BenchData.Normal(6, SparseBackward.PaddedLength(g));
        _convDx = new float[g.N * g.C * g.H * g.W];
        _convDxScratch = new float[SparseBackward.ScratchLength(g, Threads)];
        _dcols = new float[positions * patch];
        _fcX = BenchData.Normal(4, Batch * Fc1Inputs);
        _fcW = BenchData.Normal(5, Fc1Outputs * Fc1Inputs);
        _fcDw = new float[Fc1Outputs * Fc1Inputs];
        _fcDb = new float[Fc1Outputs];
        _fcDx = new float[Batch * Fc1Inputs];

        var options = new MePropOptions { Ratio = Ratio, Decay = Decay };
        _convSparsifier = new GradientSparsifier("conv2", options with { Selection = SelectionPolicy.PerChannel }, convolutional: true, seed: 7);
        _fcSparsifier = new GradientSparsifier("fc1", options with { Selection = SelectionPolicy.PerExample }, convolutional: false, seed: 7);
        // One pass of each so scratch, running state and packing buffers exist before measuring.
        Conv2Dense();
        Conv2Sparse();
        Fc1Dense();
        Fc1Sparse();
    }

    [GlobalCleanup]
    public void Cleanup() => _compute.Dispose();

    [Benchmark(Baseline = true), BenchmarkCategory("conv2")]
    public void Conv2Dense()
    {
        var g = Conv2;
        var dyRows = _convDyRows[NextStep()];
        _compute.Gemm.Multiply(true, false, Conv2Channels, g.PatchLength, g.Positions, dyRows, Conv2Channels, _cols, g.PatchLength, _convDw, g.PatchLength, true);
        _compute.Gemm.Multiply(false, false, g.Positions, g.PatchLength, Conv2Channels, dyRows, Conv2Channels, _convW, g.PatchLength, _dcols, g.PatchLength, false);
    }

    [Benchmark, BenchmarkCategory("conv2")]
    public void Conv2Sparse()
    {
        var g = Conv2;
        var pool = _compute.Pool;
        var sparse = _convSparsifier.Sparsify(_convDy[NextStep()], g.N, Conv2Channels, g.OH * g.OW, pool);
        SparseBackward.ConvGradients(sparse, g, _convXPadded, _convDw, _convDb, _convWHwc, _convDx, _convDxScratch, pool);
    }

    [Benchmark(Baseline = true), BenchmarkCategory("fc1")]
    public void Fc1Dense()
    {
        var dy = _fcDy[NextStep()];
        _compute.Gemm.Multiply(true, false, Fc1Outputs, Fc1Inputs, Batch, dy, Fc1Outputs, _fcX, Fc1Inputs, _fcDw, Fc1Inputs, true);
        _compute.Gemm.Multiply(false, false, Batch, Fc1Inputs, Fc1Outputs, dy, Fc1Outputs, _fcW, Fc1Inputs, _fcDx, Fc1Inputs, false);
    }

    [Benchmark, BenchmarkCategory("fc1")]
    public void Fc1Sparse()
    {
        var pool = _compute.Pool;
        var sparse = _fcSparsifier.Sparsify(_fcDy[NextStep()], Batch, Fc1Outputs, 1, pool);
        SparseBackward.WeightGradient(sparse, _fcX, Fc1Inputs, _fcDw, _fcDb, pool);
        _fcDx.AsSpan().Clear();
        SparseBackward.RowInputGradient(sparse, _fcW, Fc1Inputs, _fcDx, pool);
    }

    private int NextStep() => _step = (_step + 1) % Steps;

    /// <summary>rows[n*plane + p, c] = nchw[n, c, p].</summary>
    private static float[] NchwToRows(float[] nchw, int n, int channels, int plane)
    {
        var rows = new float[nchw.Length];
        for (int i = 0; i < n; i++)
            for (int c = 0; c < channels; c++)
                for (int p = 0; p < plane; p++)
                    rows[(i * plane + p) * channels + c] = nchw[(i * channels + c) * plane + p];
        return rows;
    }
}
