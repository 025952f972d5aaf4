using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MeProp.Cli.Benchmarking;

/// <summary>What <see cref="MachineProbe"/> measured: this machine's FMA peak and memory bandwidth.</summary>
/// <param name="VectorBits">Width of the FMA loop's vectors: 512 (Vector512), 256 (Vector256) or 128.</param>
/// <param name="FmaGflopsPerCore">FP32 GFLOP/s of one thread (an FMA counts 2 FLOPs).</param>
/// <param name="FmaGflopsAllThreads">FP32 GFLOP/s of <paramref name="AllThreads"/> threads at once.</param>
/// <param name="FmaGflopsByThreads">FP32 GFLOP/s measured at each thread count asked for (1 and all included).</param>
/// <param name="TriadGBPerSecond">Triad a = b + s*c over arrays far larger than the caches, all threads, counting 12 bytes per element (STREAM's convention: two reads and a write).</param>
/// <param name="TriadArrayBytes">Bytes of each of the triad's three arrays.</param>
internal sealed record MachineFigures(
    int VectorBits,
    int AllThreads,
    double FmaGflopsPerCore,
    double FmaGflopsAllThreads,
    Dictionary<int, double> FmaGflopsByThreads,
    double TriadGBPerSecond,
    long TriadArrayBytes)
{
    /// <summary>The FMA peak for <paramref name="threads"/> threads: measured if it was, else one core's times threads, capped by all threads'.</summary>
    public double FmaPeakGflops(int threads) =>
        FmaGflopsByThreads.TryGetValue(threads, out double measured) ? measured : Math.Min(FmaGflopsPerCore * threads, FmaGflopsAllThreads);

    public override string ToString() =>
        $"machine: FMA peak {FmaGflopsPerCore:F1} GFLOP/s per core, {FmaGflopsAllThreads:F1} with {AllThreads} threads " +
        $"(fp32, Vector{VectorBits}); triad {TriadGBPerSecond:F1} GB/s ({AllThreads} threads, 3 x {TriadArrayBytes >> 20} MiB arrays)";
}

/// <summary>
/// Measures this machine's limits, so a bench can say how close to them it runs: the FP32 FMA peak (a
/// tight loop of independent vector FMAs, the widest vectors the CPU accelerates, on one thread and on
/// several at once) and the memory bandwidth (a triad over arrays several times the last-level cache).
/// Each figure is the best of a few short repetitions; a probe takes a fraction of a second per figure.
/// </summary>
internal static class MachineProbe
{
    /// <summary>Independent accumulators of the FMA loop: more than FMA latency x FMA ports (4 x 2 on current x64).</summary>
    private const int Accumulators = 12;

    /// <param name="threadCounts">Thread counts to measure the FMA peak at, besides 1 and all cores.</param>
    /// <param name="secondsPerFigure">Rough time each figure takes (split over its repetitions).</param>
    /// <param name="triadArrayBytes">Bytes of each triad array; null: four times the last-level cache, 64 to 256 MiB.</param>
    public static MachineFigures Run(IEnumerable<int>? threadCounts = null, double secondsPerFigure = 0.25, long? triadArrayBytes = null)
    {
        int all = Environment.ProcessorCount;
        var counts = new SortedSet<int>(threadCounts ?? []) { 1, all };
        counts.RemoveWhere(t => t < 1);
        var byThreads = new Dictionary<int, double>();
        foreach (int t in counts) byThreads[t] = FmaGflops(t, secondsPerFigure);
        long bytes = triadArrayBytes ?? Math.Clamp(4 * LastLevelCacheBytes(), 64L << 20, 256L << 20);
        return new MachineFigures(VectorBits, all, byThreads[1], byThreads[all], byThreads, TriadGBPerSecond(all, bytes, secondsPerFigure), bytes);
    }

    /// <summary>Width in bits of the vectors the FMA loop uses here.</summary>
    public static int VectorBits => Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;

    /// <summary>FP32 GFLOP/s of <paramref name="threads"/> threads each running the FMA loop at once; best of 3.</summary>
    public static double FmaGflops(int threads, double seconds)
    {
        // Calibrate on one thread: iterations for about a third of the time asked for.
        long iterations = 1 << 10;
        while (true)
        {
            long start = Stopwatch.GetTimestamp();
            FmaLoop(iterations);
            double elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
            if (elapsed >= seconds / 30 || iterations >= 1L << 40) { iterations = Math.Max(1, (long)(iterations * (seconds / 3) / Math.Max(elapsed, 1e-9))); break; }
            iterations *= 4;
        }
        double flopsPerThread = (double)iterations * Accumulators * (VectorBits / 32) * 2;
        double best = 0;
        for (int rep = 0; rep < 3; rep++)
        {
            double elapsed = RunOnThreads(threads, _ => FmaLoop(iterations));
            best = Math.Max(best, flopsPerThread * threads / elapsed / 1e9);
        }
        return best;
    }

    /// <summary>Triad a[i] = b[i] + s*c[i] on <paramref name="threads"/> threads, each over its own slice; GB/s counting 12 bytes per element; best of 3.</summary>
    public static double TriadGBPerSecond(int threads, long arrayBytes, double seconds)
    {
        int n = (int)Math.Min(arrayBytes / sizeof(float), Array.MaxLength);
        float[] a = new float[n], b = new float[n], c = new float[n];
        RunOnThreads(threads, t => // first touch by the threads that will use each slice, and one warm pass
        {
            var (from, to) = Slice(n, threads, t);
            b.AsSpan(from, to - from).Fill(1f);
            c.AsSpan(from, to - from).Fill(2f);
            Triad(a.AsSpan(from, to - from), b.AsSpan(from, to - from), c.AsSpan(from, to - from), 0.5f);
        });
        double onePass = RunOnThreads(threads, t => { var (f, e) = Slice(n, threads, t); Triad(a.AsSpan(f, e - f), b.AsSpan(f, e - f), c.AsSpan(f, e - f), 0.5f); });
        int passes = (int)Math.Clamp(seconds / 3 / Math.Max(onePass, 1e-9), 1, 1000);
        double best = 0;
        for (int rep = 0; rep < 3; rep++)
        {
            double elapsed = RunOnThreads(threads, t =>
            {
                var (from, to) = Slice(n, threads, t);
                for (int p = 0; p < passes; p++) Triad(a.AsSpan(from, to - from), b.AsSpan(from, to - from), c.AsSpan(from, to - from), 0.5f);
            });
            best = Math.Max(best, 12.0 * n * passes / elapsed / 1e9);
        }
        GC.KeepAlive(a);
        return best;
    }

    /// <summary>Size of the largest CPU cache Linux reports for cpu0; 32 MiB where none is found.</summary>
    public static long LastLevelCacheBytes()
    {
        long largest = 0;
        try
        {
            var dir = new DirectoryInfo("/sys/devices/system/cpu/cpu0/cache");
            if (dir.Exists)
                foreach (var index in dir.GetDirectories("index*"))
                {
                    string file = Path.Combine(index.FullName, "size");
                    if (!File.Exists(file)) continue;
                    string text = File.ReadAllText(file).Trim();
                    long scale = text.EndsWith('K') ? 1L << 10 : text.EndsWith('M') ? 1L << 20 : text.EndsWith('G') ? 1L << 30 : 1;
                    if (long.TryParse(text.TrimEnd('K', 'M', 'G'), out long value)) largest = Math.Max(largest, value * scale);
                }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return largest > 0 ? largest : 32L << 20;
    }

    /// <summary>Runs <paramref name="work"/>(t) on threads t = 0..threads-1 released together; seconds from release to the last one's end.</summary>
    private static double RunOnThreads(int threads, Action<int> work)
    {
        using var ready = new CountdownEvent(threads);
        using var go = new ManualResetEventSlim(false);
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int id = t;
            workers[t] = new Thread(() => { ready.Signal(); go.Wait(); work(id); }) { IsBackground = true };
            workers[t].Start();
        }
        ready.Wait();
        long start = Stopwatch.GetTimestamp();
        go.Set();
        foreach (var w in workers) w.Join();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static (int From, int To) Slice(int n, int parts, int part) => ((int)((long)n * part / parts), (int)((long)n * (part + 1) / parts));

    /// <summary>
    /// <see cref="Accumulators"/> independent chains acc = acc*m + a, <paramref name="iterations"/> times; the
    /// chains converge to a/(1-m), so values stay finite. The result is consumed so the loop is not removed.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float FmaLoop(long iterations)
    {
        if (Vector512.IsHardwareAccelerated) return FmaLoop512(iterations);
        if (Vector256.IsHardwareAccelerated) return FmaLoop256(iterations);
        return FmaLoop128(iterations);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float FmaLoop512(long iterations)
    {
        var m = Vector512.Create(0.999f);
        var a = Vector512.Create(0.001f);
        Vector512<float> x0 = Vector512.Create(0.10f), x1 = Vector512.Create(0.11f), x2 = Vector512.Create(0.12f), x3 = Vector512.Create(0.13f),
            x4 = Vector512.Create(0.14f), x5 = Vector512.Create(0.15f), x6 = Vector512.Create(0.16f), x7 = Vector512.Create(0.17f),
            x8 = Vector512.Create(0.18f), x9 = Vector512.Create(0.19f), x10 = Vector512.Create(0.20f), x11 = Vector512.Create(0.21f);
        for (long i = 0; i < iterations; i++)
        {
            x0 = Vector512.FusedMultiplyAdd(x0, m, a); x1 = Vector512.FusedMultiplyAdd(x1, m, a);
            x2 = Vector512.FusedMultiplyAdd(x2, m, a); x3 = Vector512.FusedMultiplyAdd(x3, m, a);
            x4 = Vector512.FusedMultiplyAdd(x4, m, a); x5 = Vector512.FusedMultiplyAdd(x5, m, a);
            x6 = Vector512.FusedMultiplyAdd(x6, m, a); x7 = Vector512.FusedMultiplyAdd(x7, m, a);
            x8 = Vector512.FusedMultiplyAdd(x8, m, a); x9 = Vector512.FusedMultiplyAdd(x9, m, a);
            x10 = Vector512.FusedMultiplyAdd(x10, m, a); x11 = Vector512.FusedMultiplyAdd(x11, m, a);
        }
        return Vector512.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float FmaLoop256(long iterations)
    {
        var m = Vector256.Create(0.999f);
        var a = Vector256.Create(0.001f);
        Vector256<float> x0 = Vector256.Create(0.10f), x1 = Vector256.Create(0.11f), x2 = Vector256.Create(0.12f), x3 = Vector256.Create(0.13f),
            x4 = Vector256.Create(0.14f), x5 = Vector256.Create(0.15f), x6 = Vector256.Create(0.16f), x7 = Vector256.Create(0.17f),
            x8 = Vector256.Create(0.18f), x9 = Vector256.Create(0.19f), x10 = Vector256.Create(0.20f), x11 = Vector256.Create(0.21f);
        for (long i = 0; i < iterations; i++)
        {
            x0 = Vector256.FusedMultiplyAdd(x0, m, a); x1 = Vector256.FusedMultiplyAdd(x1, m, a);
            x2 = Vector256.FusedMultiplyAdd(x2, m, a); x3 = Vector256.FusedMultiplyAdd(x3, m, a);
            x4 = Vector256.FusedMultiplyAdd(x4, m, a); x5 = Vector256.FusedMultiplyAdd(x5, m, a);
            x6 = Vector256.FusedMultiplyAdd(x6, m, a); x7 = Vector256.FusedMultiplyAdd(x7, m, a);
            x8 = Vector256.FusedMultiplyAdd(x8, m, a); x9 = Vector256.FusedMultiplyAdd(x9, m, a);
            x10 = Vector256.FusedMultiplyAdd(x10, m, a); x11 = Vector256.FusedMultiplyAdd(x11, m, a);
        }
        return Vector256.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float FmaLoop128(long iterations)
    {
        var m = Vector128.Create(0.999f);
        var a = Vector128.Create(0.001f);
        Vector128<float> x0 = Vector128.Create(0.10f), x1 = Vector128.Create(0.11f), x2 = Vector128.Create(0.12f), x3 = Vector128.Create(0.13f),
            x4 = Vector128.Create(0.14f), x5 = Vector128.Create(0.15f), x6 = Vector128.Create(0.16f), x7 = Vector128.Create(0.17f),
            x8 = Vector128.Create(0.18f), x9 = Vector128.Create(0.19f), x10 = Vector128.Create(0.20f), x11 = Vector128.Create(0.21f);
        for (long i = 0; i < iterations; i++)
        {
            x0 = Vector128.FusedMultiplyAdd(x0, m, a); x1 = Vector128.FusedMultiplyAdd(x1, m, a);
            x2 = Vector128.FusedMultiplyAdd(x2, m, a); x3 = Vector128.FusedMultiplyAdd(x3, m, a);
            x4 = Vector128.FusedMultiplyAdd(x4, m, a); x5 = Vector128.FusedMultiplyAdd(x5, m, a);
            x6 = Vector128.FusedMultiplyAdd(x6, m, a); x7 = Vector128.FusedMultiplyAdd(x7, m, a);
            x8 = Vector128.FusedMultiplyAdd(x8, m, a); x9 = Vector128.FusedMultiplyAdd(x9, m, a);
            x10 = Vector128.FusedMultiplyAdd(x10, m, a); x11 = Vector128.FusedMultiplyAdd(x11, m, a);
        }
        return Vector128.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }

    /// <summary>a[i] = b[i] + s*c[i].</summary>
    private static void Triad(Span<float> a, ReadOnlySpan<float> b, ReadOnlySpan<float> c, float s)
    {
        int i = 0;
        var scale = new Vector<float>(s);
        for (; i <= a.Length - Vector<float>.Count; i += Vector<float>.Count)
            (new Vector<float>(b[i..]) + scale * new Vector<float>(c[i..])).CopyTo(a[i..]);
        for (; i < a.Length; i++) a[i] = b[i] + s * c[i];
    }
}
