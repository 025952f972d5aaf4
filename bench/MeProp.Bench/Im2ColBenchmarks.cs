using BenchmarkDotNet.Attributes;
using MeProp.Kernels;
using MeProp.Threading;

namespace MeProp.Bench;

/// <summary>A convolution geometry with a readable label.</summary>
public sealed record ConvCase(string Layer, ConvGeometry Geometry)
{
    public override string ToString()
    {
        var g = Geometry;
        return $"{Layer} {g.N}x{g.C}x{g.H}x{g.W} {g.KH}x{g.KW} s{g.Stride} p{g.Padding}";
    }
}

/// <summary>im2col (Forward) and col2im (Backward) for the paper's two convolutions at batch 10 and an odd case.</summary>
[MemoryDiagnoser]
public class Im2ColBenchmarks
{
    public static IEnumerable<ConvCase> Cases() =>
    [
        new("conv1", new ConvGeometry(10, 1, 28, 28, 5, 5, 1, 2)),
        new("conv2", new ConvGeometry(10, 32, 14, 14, 5, 5, 1, 2)),
        new("odd", new ConvGeometry(7, 3, 13, 11, 3, 3, 2, 1)),
    ];

    [ParamsSource(nameof(Cases))]
    public ConvCase Case { get; set; } = null!;

    [Params(1, 2)]
    public int Threads { get; set; }

    private WorkerPool _pool = null!;
    private float[] _x = [], _cols = [], _dcols = [], _dx = [];

    [GlobalSetup]
    public void Setup()
    {
        var g = Case.Geometry;
        _pool = new WorkerPool(Threads);
        _x = BenchData.Normal(1, g.N * g.C * g.H * g.W);
        _dx = new float[_x.Length];
        _cols = new float[g.Positions * g.PatchLength];
        _dcols = BenchData.Normal(2, _cols.Length);
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [Benchmark]
    public void Forward() => Im2Col.Forward(Case.Geometry, _x, _cols, _pool);

    [Benchmark]
    public void Backward() => Im2Col.Backward(Case.Geometry, _dcols, _dx, _pool);
}
