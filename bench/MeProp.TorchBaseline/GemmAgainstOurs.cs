using System.Diagnostics;
using MeProp.Layers;
using MeProp.Tensors;
using TorchSharp;

namespace MeProp.TorchBaseline
{
    /// <summary>
    /// torch.mm (MKL) against our <see cref="MeProp.Kernels.Gemm"/> in one process, block by block: this VM's
    /// speed moves by 1.5-2x within seconds, so rates measured by two processes a minute apart say more
    /// about the minute than about the engines. Each round times a block of calls of one engine, then a
    /// block of the other (which goes first alternates), on the same operands and thread count; a round's
    /// ratio is ours over libtorch's block-median rate. The summary is the median and range of those ratios.
    /// Between blocks both engines' idle threads are given time to stop spinning (ours spin 0.5 ms,
    /// OpenMP's a little longer) so neither block runs beside the other's spinners.
    /// </summary>
    static class GemmAgainstOurs
    {
        const int PauseBetweenBlocksMs = 30;
        /// <summary>About this much work per block, at ~200 GFLOP/s.</summary>
        const double BlockSeconds = 0.4;

        public static int Run(Options o)
        {
            TorchRuns.ConfigureThreads(o.Threads);
            torch.manual_seed(o.Seed);
            using var compute = new ComputeContext(o.Threads);
            int size = o.GemmSize;
            var shapes = new (int M, int K, int N)[] { (size, size, size), (1960, 800, 64) };
            Console.Out.WriteLine($"torch.mm (libtorch {torch.__version__}) against MeProp Gemm, {o.Threads} thread(s), " +
                                  $"{o.AgainstOursRounds} rounds; GFLOP/s are block medians");
            foreach (var (m, k, n) in shapes)
            {
                using var a = torch.rand(m, k, dtype: torch.float32);
                using var b = torch.rand(k, n, dtype: torch.float32);
                var ourA = new Tensor(m, k);
                var ourB = new Tensor(k, n);
                var ourC = new Tensor(m, n);
                a.data<float>().CopyTo(ourA.Span);
                b.data<float>().CopyTo(ourB.Span);
                double flops = 2.0 * m * k * n;
                int calls = Math.Clamp((int)(BlockSeconds * 2e11 / flops), 3, 2000);

                void Ours() => compute.Gemm.Multiply(false, false, m, n, k, ourA.Span, k, ourB.Span, n, ourC.Span, n, false);
                void Torch()
                {
                    using (torch.NewDisposeScope()) torch.mm(a, b);
                }

                for (int w = 0; w < 3; w++) { Torch(); Ours(); }
                double relativeError = RelativeDifference(torch.mm(a, b), ourC);

                var ratios = new double[o.AgainstOursRounds];
                var ourRates = new double[o.AgainstOursRounds];
                var torchRates = new double[o.AgainstOursRounds];
                Console.Out.WriteLine($"({m}x{k})x({k}x{n}), {calls} calls a block; max |ours - torch| / max |torch| = {relativeError:E1}");
                for (int r = 0; r < o.AgainstOursRounds; r++)
                {
                    bool oursFirst = r % 2 == 1;
                    double first = flops / BlockMedianSeconds(oursFirst ? Ours : Torch, calls) / 1e9;
                    double second = flops / BlockMedianSeconds(oursFirst ? Torch : Ours, calls) / 1e9;
                    (ourRates[r], torchRates[r]) = oursFirst ? (first, second) : (second, first);
                    ratios[r] = ourRates[r] / torchRates[r];
                    Console.Out.WriteLine($"  round {r + 1,2} ({(oursFirst ? "ours first " : "torch first")}): ours {ourRates[r],6:F1}  torch {torchRates[r],6:F1} GFLOP/s  ratio {ratios[r]:F3}");
                }
                Console.Out.WriteLine(
                    $"  median: ours {TorchRuns.Percentile(ourRates, 0.5):F1}, torch {TorchRuns.Percentile(torchRates, 0.5):F1} GFLOP/s; " +
                    $"ratio median {TorchRuns.Percentile(ratios, 0.5):F3} (p25 {TorchRuns.Percentile(ratios, 0.25):F3}, " +
                    $"p75 {TorchRuns.Percentile(ratios, 0.75):F3}, min {ratios.Min():F3}, max {ratios.Max():F3}); " +
                    $"rounds at >= 0.9: {ratios.Count(x => x >= 0.9)} of {ratios.Length}");
            }
            return 0;
        }

        static double BlockMedianSeconds(Action call, int calls)
        {
            Thread.Sleep(PauseBetweenBlocksMs);
            var times = new double[calls];
            for (int i = 0; i < calls; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                call();
                times[i] = TorchRuns.Ms(t0, Stopwatch.GetTimestamp()) / 1000;
            }
            return TorchRuns.Percentile(times, 0.5);
        }

        static double RelativeDifference(torch.Tensor expected, Tensor actual)
        {
            using (expected)
            {
                var e = expected.data<float>().ToArray();
                var c = actual.Span;
                double maxDiff = 0, maxAbs = 0;
                for (int i = 0; i < e.Length; i++)
                {
                    maxDiff = Math.Max(maxDiff, Math.Abs(e[i] - c[i]));
                    maxAbs = Math.Max(maxAbs, Math.Abs(e[i]));
                }
                return maxDiff / maxAbs;
            }
        }
    }
}
