using BenchmarkDotNet.Attributes;
using MeProp.Kernels;
using MeProp.Sparsity;

namespace MeProp.Bench;

/// <summary>
/// <see cref="TopKSelection.Select"/> of k = 5% of one pool, on |gradient-like| scores (85% zeros, so
/// many ties at zero) and on dense |normal| scores. Single-threaded by design (the sparsifier runs one
/// selection per task), so there is no thread count.
/// Pools: 7840 = conv1 per-channel at batch 10 (10x28x28), 1960 = conv2 (10x14x14), 1024 = fc1 per
/// example, 1001 odd.
/// </summary>
[MemoryDiagnoser]
public class TopKBenchmarks
{
    public enum Scores { Gradient, Dense }

    [Params(7840, 1960, 1024, 1001)]
    public int PoolSize { get; set; }

    [Params(Scores.Gradient, Scores.Dense)]
    public Scores Data { get; set; }

    private float[] _scores = [];
    private int[] _chosen = [];
    private int _k;

    [GlobalSetup]
    public void Setup()
    {
        var values = Data == Scores.Gradient ? BenchData.GradientLike(1, PoolSize) : BenchData.Normal(1, PoolSize);
        _scores = BenchData.Magnitudes(values);
        _chosen = new int[PoolSize];
        _k = new MePropOptions { Ratio = 0.05 }.KeepCount(PoolSize);
    }

    [Benchmark]
    public int Select() => TopKSelection.Select(_scores, _k, _chosen);
}
