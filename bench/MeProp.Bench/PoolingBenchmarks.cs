using BenchmarkDotNet.Attributes;
using MeProp.Kernels;
using MeProp.Threading;

namespace MeProp.Bench;

/// <summary>An input shape [N, C, H, W] for pooling.</summary>
public sealed record PoolCase(string Layer, int N, int C, int H, int W)
{
    public int Planes => N * C;
    public override string ToString() => $"{Layer} {N}x{C}x{H}x{W}";
}

/// <summary>Max pooling 2x2, stride 2: forward (with argmax) and backward (scatter through argmax).</summary>
[MemoryDiagnoser]
public class PoolingBenchmarks
{
    private const int Window = 2, Stride = 2;

    public static IEnumerable<PoolCase> Cases() =>
    [
        new("pool1", 10, 32, 28, 28),
        new("pool2", 10, 64, 14, 14),
        new("odd", 7, 5, 13, 13), // floor mode drops the last row and column
    ];

    [ParamsSource(nameof(Cases))]
    public PoolCase Case { get; set; } = null!;

    [Params(1, 2)]
    public int Threads { get; set; }

    private WorkerPool _pool = null!;
    private float[] _x = [], _y = [], _dy = [], _dx = [];
    private int[] _argmax = [];

    [GlobalSetup]
    public void Setup()
    {
        var c = Case;
        int outputs = c.Planes * ((c.H - Window) / Stride + 1) * ((c.W - Window) / Stride + 1);
        _pool = new WorkerPool(Threads);
        _x = BenchData.Normal(1, c.Planes * c.H * c.W);
        _dx = new float[_x.Length];
        _y = new float[outputs];
        _argmax = new int[outputs];
        _dy = BenchData.Normal(2, outputs);
        Forward(); // argmax for Backward
    }

    [GlobalCleanup]
    public void Cleanup() => _pool.Dispose();

    [Benchmark]
    public void Forward() => MaxPooling.Forward(_x, _y, _argmax, Case.Planes, Case.H, Case.W, Window, Stride, _pool);

    [Benchmark]
    public void Backward() => MaxPooling.Backward(_dy, _argmax, _dx, Case.Planes, Case.H, Case.W, Window, Stride, _pool);
}
