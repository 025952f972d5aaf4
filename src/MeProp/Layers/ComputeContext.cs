using MeProp.Kernels;
using MeProp.Threading;

namespace MeProp.Layers;

/// <summary>
/// The threads and shared scratch that layers compute with. One context serves one model, whose
/// layers run one after another, so they can share the GEMM packing buffers.
/// </summary>
public sealed class ComputeContext : IDisposable
{
    public ComputeContext(int threads)
    {
        Pool = new WorkerPool(threads);
        Gemm = new Gemm(Pool);
    }

    /// <summary>Worker threads (the caller counts as one).</summary>
    public WorkerPool Pool { get; }

    /// <summary>Matrix product that runs on <see cref="Pool"/>.</summary>
    public Gemm Gemm { get; }

    public int Threads => Pool.ThreadCount;

    public void Dispose() => Pool.Dispose();
}
