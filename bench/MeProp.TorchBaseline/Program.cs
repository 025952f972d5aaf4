// libtorch (TorchSharp) baseline for `meprop bench`. Run as a child process; with --json it prints exactly
// one JSON object on stdout. Everything else (errors, notes) goes to stderr.
//
//   MeProp.TorchBaseline [--batch 10] [--threads 2] [--steps 300] [--warmup 30] [--seed 1] [--model FILE.json] [--json]
//     (--model: the network of a network file, see NetworkModules.cs, on synthetic batches of its input
//     shape and classes; without it the paper's network)
//   MeProp.TorchBaseline --gemm N [--threads 2] [--json]
//   MeProp.TorchBaseline --gemm N --against-ours R [--threads 2]
//
// Exit codes: 0 ok, 2 bad arguments, 3 TorchSharp/libtorch could not be loaded.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace MeProp.TorchBaseline
{
    static class Program
    {
        public static int Main(string[] args)
        {
            Options options;
            try
            {
                options = Options.Parse(args);
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                Console.Error.WriteLine(Options.Usage);
                return 2;
            }
            if (options.Help)
            {
                Console.Out.WriteLine(Options.Usage);
                return 0;
            }

            string? loadError = TorchLoader.TryLoad();
            if (loadError is not null)
            {
                Console.Error.WriteLine($"error: TorchSharp could not be loaded: {loadError}");
                return 3;
            }

            // Only touch TorchSharp types after the native library is known to load: TorchSharp's own
            // failure path writes its message to stdout, which would break the JSON contract.
            if (options.GemmSize > 0 && options.AgainstOursRounds > 0) return GemmAgainstOurs.Run(options);
            return options.GemmSize > 0 ? TorchRuns.Gemm(options) : TorchRuns.TrainingSteps(options);
        }
    }

    sealed class Options
    {
        public int Batch = 10;
        public int Threads = 2;
        public int Steps = 300;
        public int Warmup = 30;
        public long Seed = 1;
        public string? Model;
        public int GemmSize;
        public int AgainstOursRounds;
        public bool Json;
        public bool Help;

        public const string Usage =
            "usage: MeProp.TorchBaseline [--batch N] [--threads N] [--steps N] [--warmup N] [--seed N] [--model FILE.json] [--json]\n" +
            "       MeProp.TorchBaseline --gemm N [--threads N] [--json]\n" +
            "       MeProp.TorchBaseline --gemm N --against-ours ROUNDS [--threads N]";

        public static Options Parse(string[] args)
        {
            var o = new Options();
            for (int i = 0; i < args.Length; i++)
            {
                string a = args[i];
                switch (a)
                {
                    case "--json": o.Json = true; break;
                    case "--help" or "-h": o.Help = true; break;
                    case "--batch": o.Batch = PositiveInt(args, ref i); break;
                    case "--threads": o.Threads = PositiveInt(args, ref i); break;
                    case "--steps": o.Steps = PositiveInt(args, ref i); break;
                    case "--warmup": o.Warmup = NonNegativeInt(args, ref i); break;
                    case "--seed": o.Seed = NonNegativeInt(args, ref i); break;
                    case "--gemm": o.GemmSize = PositiveInt(args, ref i); break;
                    case "--against-ours": o.AgainstOursRounds = PositiveInt(args, ref i); break;
                    case "--model":
                        if (++i >= args.Length) throw new ArgumentException("--model needs a value");
                        o.Model = args[i];
                        break;
                    default: throw new ArgumentException($"unknown argument '{a}'");
                }
            }
            return o;
        }

        static int PositiveInt(string[] args, ref int i)
        {
            int v = NonNegativeInt(args, ref i);
            if (v == 0) throw new ArgumentException($"{args[i - 1]} must be positive, got '{args[i]}'");
            return v;
        }

        static int NonNegativeInt(string[] args, ref int i)
        {
            string name = args[i];
            if (++i >= args.Length) throw new ArgumentException($"{name} needs a value");
            if (!int.TryParse(args[i], out int v) || v < 0)
                throw new ArgumentException($"{name} must be a non-negative integer, got '{args[i]}'");
            return v;
        }
    }

    /// <summary>
    /// Loads libLibTorchSharp.so (and libtorch behind it) ourselves first, so that a failure gives the real
    /// dlerror text (e.g. "version `GLIBCXX_3.4.32' not found") instead of TorchSharp's message about a
    /// missing libtorch-cpu-linux-x64 reference.
    /// </summary>
    static class TorchLoader
    {
        public static string? TryLoad()
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
                return null; // elsewhere let TorchSharp do its own loading
            string native = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native");
            string shim = Path.Combine(native, "libLibTorchSharp.so");
            if (!File.Exists(shim)) shim = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
            if (!File.Exists(shim))
                return $"libLibTorchSharp.so not found under {AppContext.BaseDirectory} " +
                       "(build with: dotnet build -c Release bench/MeProp.TorchBaseline)";
            try
            {
                NativeLibrary.Load(shim);
                return null;
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                string hint = e.Message.Contains("GLIBCXX_")
                    ? " The system libstdc++ is older than the one TorchSharp was built against; the build " +
                      "marks that version need weak in the output copy (target PatchTorchSharpShimAfterBuild) " +
                      "- see the build's WeakenElfVersionNeed messages and bench/MeProp.TorchBaseline/README.md."
                    : "";
                string reason = string.Join(" ", e.Message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
                return $"{shim}: {reason}{hint}";
            }
        }
    }

    static class TorchRuns
    {
        public static int TrainingSteps(Options o)
        {
            ConfigureThreads(o.Threads);
            torch.manual_seed(o.Seed);

            long[] input = [1, 28, 28];
            long classes = 10;
            nn.Module<torch.Tensor, torch.Tensor> model;
            if (o.Model is string path)
            {
                var spec = MeProp.Models.NetworkSpec.Load(path);
                input = spec.Input.Select(d => (long)d).ToArray();
                classes = spec.Classes;
                model = NetworkModules.Build(spec);
            }
            else model = nn.Sequential(
                ("conv1", nn.Conv2d(1, 32, 5, padding: 2)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(32, 64, 5, padding: 2)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(3136, 1024)),
                ("relu3", nn.ReLU()),
                ("fc2", nn.Linear(1024, 10)));
            var optimizer = torch.optim.Adam(model.parameters(), lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8);

            // A small pool of seeded batches made before timing: images uniform in [0, 1), labels in 0..9.
            const int poolSize = 8;
            var images = new torch.Tensor[poolSize];
            var labels = new torch.Tensor[poolSize];
            for (int i = 0; i < poolSize; i++)
            {
                images[i] = torch.rand([o.Batch, .. input], dtype: torch.float32);
                labels[i] = torch.randint(0, classes, [o.Batch], dtype: torch.int64);
            }

            int total = o.Warmup + o.Steps;
            var forward = new double[o.Steps];
            var backward = new double[o.Steps];
            var update = new double[o.Steps];
            var step = new double[o.Steps];
            float lastLoss = float.NaN;
            model.train();
            for (int s = 0; s < total; s++)
            {
                long t0 = Stopwatch.GetTimestamp(), t1, t2, t3;
                using (torch.NewDisposeScope())
                {
                    var logits = model.forward(images[s % poolSize]);
                    var loss = nn.functional.cross_entropy(logits, labels[s % poolSize]);
                    t1 = Stopwatch.GetTimestamp();
                    optimizer.zero_grad();
                    loss.backward();
                    t2 = Stopwatch.GetTimestamp();
                    optimizer.step();
                    t3 = Stopwatch.GetTimestamp();
                    if (s == total - 1) lastLoss = loss.item<float>();
                }
                long t4 = Stopwatch.GetTimestamp();
                int k = s - o.Warmup;
                if (k < 0) continue;
                forward[k] = Ms(t0, t1);
                backward[k] = Ms(t1, t2);
                update[k] = Ms(t2, t3);
                step[k] = Ms(t0, t4);
            }

            // Evaluation forward of the trained model on the same batches: eval mode, no autograd.
            var evalForward = new double[o.Steps];
            model.eval();
            using (torch.no_grad())
                for (int s = 0; s < total; s++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    using (torch.NewDisposeScope()) model.forward(images[s % poolSize]);
                    int k = s - o.Warmup;
                    if (k >= 0) evalForward[k] = Ms(t0, Stopwatch.GetTimestamp());
                }

            var stats = new
            {
                EvalForward = Percentile(evalForward, 0.5),
                Forward = Percentile(forward, 0.5),
                Backward = Percentile(backward, 0.5),
                Update = Percentile(update, 0.5),
                Step = Percentile(step, 0.5),
                P10 = Percentile(step, 0.1),
                P90 = Percentile(step, 0.9),
            };
            if (o.Json)
            {
                WriteJson(w =>
                {
                    w.WriteString("engine", "torchsharp");
                    w.WriteString("mode", "dense");
                    if (o.Model is not null) w.WriteString("model", o.Model);
                    w.WriteNumber("batch", o.Batch);
                    w.WriteNumber("threads", o.Threads);
                    w.WriteNumber("steps", o.Steps);
                    w.WriteNumber("forward_ms", Round(stats.Forward));
                    w.WriteNumber("backward_ms", Round(stats.Backward));
                    w.WriteNumber("update_ms", Round(stats.Update));
                    w.WriteNumber("step_ms", Round(stats.Step));
                    w.WriteNumber("step_ms_p10", Round(stats.P10));
                    w.WriteNumber("step_ms_p90", Round(stats.P90));
                    w.WriteNumber("eval_forward_ms", Round(stats.EvalForward));
                    w.WriteString("libtorch_version", torch.__version__);
                });
            }
            else
            {
                Console.Out.WriteLine(
                    $"torchsharp dense batch={o.Batch} threads={o.Threads} steps={o.Steps} (warmup {o.Warmup}): " +
                    $"step {stats.Step:F3} ms median (p10 {stats.P10:F3}, p90 {stats.P90:F3}); " +
                    $"forward {stats.Forward:F3}, backward {stats.Backward:F3}, update {stats.Update:F3} ms; evaluation forward {stats.EvalForward:F3} ms; " +
                    $"last loss {lastLoss:F4}; libtorch {torch.__version__}");
            }
            return 0;
        }

        /// <summary>torch.mm throughput: N x N times N x N, and the conv2 im2col product of batch 10,
        /// (1960 x 800) x (800 x 64).</summary>
        public static int Gemm(Options o)
        {
            ConfigureThreads(o.Threads);
            torch.manual_seed(o.Seed);
            int n = o.GemmSize;
            var shapes = new (int M, int K, int N)[] { (n, n, n), (1960, 800, 64) };
            var results = new List<(int M, int K, int N, double Ms, double Gflops)>();
            foreach (var (m, k, nn) in shapes)
            {
                using var a = torch.rand(m, k, dtype: torch.float32);
                using var b = torch.rand(k, nn, dtype: torch.float32);
                double flops = 2.0 * m * k * nn;
                // About 1 s of work after 3 warm-up calls, at least 5 timed calls.
                int reps = Math.Clamp((int)(1e9 * 20 / Math.Max(flops, 1)), 5, 2000);
                var times = new double[reps];
                for (int r = -3; r < reps; r++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    using (torch.NewDisposeScope()) torch.mm(a, b);
                    long t1 = Stopwatch.GetTimestamp();
                    if (r >= 0) times[r] = Ms(t0, t1);
                }
                double median = Percentile(times, 0.5);
                results.Add((m, k, nn, median, flops / (median * 1e6)));
            }

            if (o.Json)
            {
                WriteJson(w =>
                {
                    w.WriteString("engine", "torchsharp");
                    w.WriteString("mode", "gemm");
                    w.WriteNumber("threads", o.Threads);
                    w.WriteStartArray("results");
                    foreach (var r in results)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("m", r.M);
                        w.WriteNumber("k", r.K);
                        w.WriteNumber("n", r.N);
                        w.WriteNumber("ms", Round(r.Ms));
                        w.WriteNumber("gflops", Round(r.Gflops));
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    w.WriteString("libtorch_version", torch.__version__);
                });
            }
            else
            {
                foreach (var r in results)
                    Console.Out.WriteLine(
                        $"torchsharp mm ({r.M}x{r.K})x({r.K}x{r.N}) threads={o.Threads}: {r.Ms:F3} ms median, {r.Gflops:F1} GFLOP/s");
            }
            return 0;
        }

        internal static void ConfigureThreads(int threads)
        {
            // The inter-op pool size can only be set before any inter-op work starts: do it first.
            torch.set_num_interop_threads(1);
            torch.set_num_threads(threads);
        }

        internal static double Ms(long from, long to) => (to - from) * 1000.0 / Stopwatch.Frequency;

        static double Round(double v) => Math.Round(v, 4);

        /// <summary>Linear interpolation between closest ranks (numpy's default).</summary>
        internal static double Percentile(double[] values, double q)
        {
            var sorted = (double[])values.Clone();
            Array.Sort(sorted);
            double pos = q * (sorted.Length - 1);
            int lo = (int)Math.Floor(pos);
            int hi = Math.Min(lo + 1, sorted.Length - 1);
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
        }

        static void WriteJson(Action<Utf8JsonWriter> body)
        {
            using var stdout = Console.OpenStandardOutput();
            using (var w = new Utf8JsonWriter(stdout))
            {
                w.WriteStartObject();
                body(w);
                w.WriteEndObject();
            }
            stdout.WriteByte((byte)'\n');
        }
    }
}
