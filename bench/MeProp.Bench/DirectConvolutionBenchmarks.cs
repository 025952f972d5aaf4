using BenchmarkDotNet.Attributes;
using MeProp.Kernels;

namespace MeProp.Bench;

/// <summary>
/// The image-by-image convolution forward (<see cref="DirectConvolution.ForwardImage"/>) over a batch,
/// one image after another on one thread (the layer spreads images over its workers), for the paper's
/// two convolutions at batch 10 and an odd case.
/// </summary>
[MemoryDiagnoser]
public unsafe class DirectConvolutionBenchmarks
{
    /// <summary>The Im2Col cases with their layers' output channels (an odd count, below one register tile, for the odd case).</summary>
    public static IEnumerable<(ConvCase Case, int OutChannels)> Cases() =>
        Im2ColBenchmarks.Cases().Zip(new[] { 32, 64, 5 });

    [ParamsSource(nameof(Cases))]
    public (ConvCase Case, int OutChannels) Layer { get; set; }

    private ConvCase Case => Layer.Case;
    private int OutChannels => Layer.OutChannels;

    private float[] _padded = [], _weightT = [], _rows = [];

    [GlobalSetup]
    public void Setup()
    {
        var g = Case.Geometry;
        _padded = BenchData.Normal(1, g.N * (g.H + 2 * g.Padding) * (g.W + 2 * g.Padding) * g.C);
        _weightT = BenchData.Normal(2, g.PatchLength * OutChannels + DirectConvolution.WeightSlack);
        _rows = new float[g.OH * g.OW * OutChannels];
    }

    [Benchmark]
    public void ForwardImages()
    {
        var g = Case.Geometry;
        int imageLength = (g.H + 2 * g.Padding) * (g.W + 2 * g.Padding) * g.C;
        fixed (float* padded = _padded, weightT = _weightT, rows = _rows)
            for (int n = 0; n < g.N; n++)
                DirectConvolution.ForwardImage(padded + (long)n * imageLength, g, weightT, OutChannels, rows);
    }
}
