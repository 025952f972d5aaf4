using BenchmarkDotNet.Attributes;
using MeProp.Layers;

namespace MeProp.Bench;

/// <summary>
/// One GEMM call C[m,n] = op(A)[m,k]·op(B)[k,n] (C += for the dW products, as the layers do).
/// A^T / B^T mark a transposed operand, stored as the layers store it.
/// </summary>
public sealed record GemmShape(string Layer, int M, int N, int K, bool TransA = false, bool TransB = false, bool Accumulate = false)
{
    public int Lda => TransA ? M : K;
    public int Ldb => TransB ? K : N;

    public override string ToString() =>
        $"{Layer} {M}x{N}x{K}{(TransA ? " A^T" : "")}{(TransB ? " B^T" : "")}{(Accumulate ? " +=" : "")}";
}

/// <summary>Dense GEMM on the shapes of the paper's CNN at batch 10, a large square and an odd size.</summary>
[MemoryDiagnoser]
public class GemmBenchmarks
{
    public static IEnumerable<GemmShape> Shapes() =>
    [
        new("conv1 fwd", 7840, 32, 25, TransB: true),
        new("conv2 fwd", 1960, 64, 800, TransB: true),
        new("conv2 dW", 64, 800, 1960, TransA: true, Accumulate: true),
        new("conv2 dcols", 1960, 800, 64),
        new("fc1 fwd", 10, 1024, 3136, TransB: true),
        new("fc1 dW", 1024, 3136, 10, TransA: true, Accumulate: true),
        new("fc1 dx", 10, 3136, 1024),
        new("square", 2048, 2048, 2048),
        new("odd", 333, 77, 511),
    ];

    [ParamsSource(nameof(Shapes))]
    public GemmShape Shape { get; set; } = null!;

    [Params(1, 2)]
    public int Threads { get; set; }

    private ComputeContext _compute = null!;
    private float[] _a = [], _b = [], _c = [];

    [GlobalSetup]
    public void Setup()
    {
        _compute = new ComputeContext(Threads);
        _a = BenchData.Normal(1, Shape.M * Shape.K);
        _b = BenchData.Normal(2, Shape.K * Shape.N);
        _c = new float[Shape.M * Shape.N];
        Multiply(); // grows the packing buffer outside the measurement
    }

    [GlobalCleanup]
    public void Cleanup() => _compute.Dispose();

    [Benchmark]
    public void Multiply()
    {
        var s = Shape;
        _compute.Gemm.Multiply(s.TransA, s.TransB, s.M, s.N, s.K, _a, s.Lda, _b, s.Ldb, _c, s.N, s.Accumulate);
    }
}
