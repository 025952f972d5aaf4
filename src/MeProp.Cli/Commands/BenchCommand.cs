using System.CommandLine;
using System.Text.Json;
using MeProp.Cli.Benchmarking;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>
/// `meprop bench`: training-step timings of the paper's network, dense and meProp, side by side with
/// libtorch (TorchSharp) in a child process, interleaved so every ratio is measured on the same machine
/// state: for each batch size and thread count, TorchSharp runs before and after our configurations,
/// which take turns in blocks of steps. A machine probe (<see cref="MachineProbe"/>) first measures the FMA
/// peak and memory bandwidth, and every configuration's line gives its GFLOP/s on the dense-equivalent work
/// and the fraction of that peak.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var batches = ListOption<int>("--batch", "Batch sizes", "10,100");
        var threads = ListOption<int>("--threads", "Thread counts", "1,2");
        var topks = ListOption<double>("--topk", "meProp ratios", "0.05,0.08,0.1");
        var decays = ListOption<double>("--decay", "meProp decays", "0,0.6");
        var batchNorm = new Option<string>("--batch-norm") { Description = "without, with or both", DefaultValueFactory = _ => "both" };
        batchNorm.AcceptOnlyFromAmong("without", "with", "both");
        var steps = new Option<int>("--steps") { Description = "Timed steps per configuration", DefaultValueFactory = _ => 300 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed steps first", DefaultValueFactory = _ => 30 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of weights and synthetic data", DefaultValueFactory = _ => 1UL };
        var json = new Option<string?>("--json") { Description = "Also write the records as a JSON list to this file" };
        var torch = new Option<string?>("--torchsharp") { Description = $"Path of MeProp.TorchBaseline.dll (default: {TorchSharpBaseline.DefaultRelativePath} above the current directory, built there first when missing)" };
        var noTorch = new Option<bool>("--no-torchsharp") { Description = "Skip the libtorch comparison (otherwise a missing baseline is built from bench/MeProp.TorchBaseline when that project is found above the current directory)" };
        var model = new Option<string?>("--model") { Description = "A network file (JSON, see docs/GUIDE.md) to bench instead of the paper's network, on synthetic batches of its input shape and classes; the TorchSharp baseline builds the same network from it (--batch-norm does not apply)" };
        var mepropLayers = new Option<string?>("--meprop-layers") { Description = "With --model: the layers meProp sparsifies, comma-separated (default: every conv layer except the first one)" };
        var exact = new Option<string[]>("--exact-sparsity")
        {
            Description = "Our engine's exact sparsity settings to time, comma-separated: off, auto, always (default off,auto: the dense products alone, and the sparse kernels on dL/dy's non-zeros where they are few)",
            CustomParser = result =>
            {
                string text = result.Tokens.Count > 0 ? string.Join(",", result.Tokens.Select(t => t.Value)) : "off,auto";
                var values = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                foreach (string v in values)
                    if (v is not ("off" or "auto" or "always")) { result.AddError($"--exact-sparsity takes off, auto or always, got '{v}'"); return []; }
                return values;
            },
            DefaultValueFactory = _ => ["off", "auto"],
        };
        var exactProbe = new Option<bool>("--exact-threshold")
        {
            Description = "Only time single layers (the paper network's and ResNet-20's shapes) at densities of dL/dy from 1% to 100%, dense against exact-sparse, at each --batch and --threads, then stop",
        };
        var data = new Option<string?>("--data") { Description = "Our side trains on this data directory's first training images (as `meprop train --data` reads it) instead of synthetic batches; libtorch stays on synthetic ones, as its dense step's work does not depend on the values" };
        var weights = new Option<string?>("--weights") { Description = "Our side starts from these trained weights (a model-only .safetensors of the benched network, such as a run's best.safetensors), so the step meets a trained network's sparsity; libtorch keeps its initialisation" };
        var probeOnly = new Option<bool>("--probe") { Description = "Only measure this machine's FMA peak and memory bandwidth (printed, and written to --json), then stop" };
        var command = new Command("bench", "Time training steps of the paper's network (dense and meProp) against libtorch through TorchSharp")
        {
            batches, threads, topks, decays, batchNorm, steps, warmup, seed, json, torch, noTorch, probeOnly, model, mepropLayers, exact, exactProbe,
            data, weights,
        };
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            int stepCount = parse.GetValue(steps), warmupCount = parse.GetValue(warmup);
            if (stepCount < 1 || warmupCount < 0) throw new ArgumentException("--steps must be >= 1 and --warmup >= 0");
            if (parse.GetValue(probeOnly))
            {
                var figures = MachineProbe.Run(parse.GetValue(threads));
                Console.WriteLine(figures);
                if (parse.GetValue(json) is string probePath)
                {
                    AtomicFile.WriteAllText(probePath, JsonSerializer.Serialize(figures, Json.Options) + "\n");
                    Console.WriteLine($"wrote {probePath}");
                }
                return 0;
            }
            if (parse.GetValue(exactProbe))
            {
                var points = new List<ExactSparsityPoint>();
                foreach (int threadCount in parse.GetValue(threads)!)
                foreach (var point in ExactSparsityProbe.Run(ExactSparsityProbe.DefaultLayers, parse.GetValue(batches)!, threadCount,
                             ExactSparsityProbe.DefaultDensities, stepCount, parse.GetValue(seed)))
                {
                    Console.WriteLine($"{point.Layer,-38} batch {point.Batch,3} threads {point.Threads} density {point.Density,5:P0}: dense {point.DenseMs,8:F3} ms  exact {point.ExactMs,8:F3} ms  ({point.Ratio:F2}x)  auto {point.AutoMs,8:F3} ms");
                    points.Add(point);
                }
                if (parse.GetValue(json) is string pointsPath)
                {
                    AtomicFile.WriteAllText(pointsPath, JsonSerializer.Serialize(points, Json.Options) + "\n");
                    Console.WriteLine($"wrote {pointsPath}");
                }
                return 0;
            }
            string? modelPath = parse.GetValue(model);
            NetworkSpec? network = null;
            IReadOnlyList<string>? layerNames = null;
            if (modelPath is not null)
            {
                network = NetworkSpec.Load(modelPath);
                modelPath = Path.GetFullPath(modelPath);
                layerNames = parse.GetValue(mepropLayers)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                CheckNetwork(network, layerNames, parse.GetValue(seed));
            }
            else if (parse.GetValue(mepropLayers) is not null) throw new ArgumentException("--meprop-layers applies only with --model");
            BenchInputs? inputs = null;
            if (parse.GetValue(data) is not null || parse.GetValue(weights) is not null)
            {
                string? directory = parse.GetValue(data);
                string? weightsPath = parse.GetValue(weights) is string w ? Path.GetFullPath(w) : null;
                if (weightsPath is not null && !File.Exists(weightsPath)) throw new ArgumentException($"--weights: {weightsPath} does not exist");
                inputs = new BenchInputs(directory is null ? null : CommonOptions.LoadData(directory).Training,
                    directory is null ? null : Path.GetFullPath(directory), weightsPath);
                Console.WriteLine($"our side: {(directory is null ? "synthetic batches" : $"the first training images of {inputs.DataDirectory}")}, "
                                  + $"{(weightsPath is null ? "seeded initial weights" : $"weights from {weightsPath}")}; libtorch: synthetic batches, its own initialisation");
            }
            var baseline = parse.GetValue(noTorch) ? null
                : TorchSharpBaseline.Obtain(parse.GetValue(torch), Directory.GetCurrentDirectory(), Console.Out);
            var machine = MachineProbe.Run(parse.GetValue(threads));
            Console.WriteLine(machine);
            var paperCnn = network is null ? PaperCnnSummary(parse.GetValue(seed)) : NetworkSummary(network, parse.GetValue(seed));
            var bnChoices = network is not null ? new[] { false }
                : parse.GetValue(batchNorm) switch { "with" => new[] { true }, "without" => new[] { false }, _ => new[] { false, true } };
            var records = new List<StepRecord>();
            ulong seedValue = parse.GetValue(seed);
            foreach (int batch in parse.GetValue(batches)!)
            foreach (int threadCount in parse.GetValue(threads)!)
            {
                var configs = new List<StepConfig>();
                foreach (bool bn in bnChoices)
                foreach (var setting in parse.GetValue(exact)!.Select(CommonOptions.ParseExactSparsity))
                {
                    configs.Add(new StepConfig(null, 0, bn, batch, threadCount, network, layerNames, setting, inputs));
                    foreach (double k in parse.GetValue(topks)!)
                    foreach (double d in parse.GetValue(decays)!)
                        configs.Add(new StepConfig(k, d, bn, batch, threadCount, network, layerNames, setting, inputs));
                }
                var group = new List<StepRecord>();
                StepRecord Torch() => Print(baseline!.Run(batch, threadCount, stepCount, warmupCount, seedValue, modelPath)
                    with { Model = modelPath, ForwardMacsPerExample = paperCnn.ForwardMacs, BackwardMacsPerExample = paperCnn.BackwardMacs }, machine);
                if (baseline is not null) group.Add(Torch());
                group.AddRange(RunInterleaved(configs, threadCount, stepCount, warmupCount, seedValue).Select(r => Print(r with { Model = modelPath }, machine)));
                if (baseline is not null) group.Add(Torch());
                records.AddRange(group);
                PrintRatios(group);
            }
            if (parse.GetValue(json) is string path)
            {
                AtomicFile.WriteAllText(path, JsonSerializer.Serialize(records, Json.Options) + "\n");
                Console.WriteLine($"wrote {path}");
            }
            return 0;
        }));
        return command;
    }

    /// <summary>Timed steps taken by one configuration before the next one's turn.</summary>
    private const int StepsPerBlock = 10;

    /// <summary>
    /// Untimed steps at the start of each turn: another configuration's weights and optimizer state
    /// (about 55 MB each) have just pushed this one's out of the caches, where in training they stay.
    /// </summary>
    private const int RewarmSteps = 3;

    /// <summary>
    /// Runs the configurations on one pool, taking turns every <see cref="StepsPerBlock"/> timed steps
    /// (warm-up first, in turn too), so that all of them see the same drift of the machine's speed.
    /// </summary>
    private static IEnumerable<StepRecord> RunInterleaved(List<StepConfig> configs, int threads, int steps, int warmup, ulong seed)
    {
        using var compute = new ComputeContext(threads);
        var benches = configs.Select(c => new StepBenchmark(c, compute, seed, steps)).ToArray();
        for (int done = 0; done < warmup; done += StepsPerBlock)
            foreach (var bench in benches) bench.RunSteps(Math.Min(StepsPerBlock, warmup - done), timed: false);
        for (int done = 0; done < steps; done += StepsPerBlock)
            foreach (var bench in benches)
            {
                bench.RunSteps(RewarmSteps, timed: false);
                bench.RunSteps(Math.Min(StepsPerBlock, steps - done), timed: true);
                // Evaluation forwards right after, on the same warm weights.
                bench.RunEvalForwards(1, timed: false);
                bench.RunEvalForwards(Math.Min(StepsPerBlock, steps - done), timed: true);
            }
        return benches.Select(b => b.Record()).ToArray();
    }

    /// <summary>The multiply-adds of the network the libtorch baseline builds: the paper's CNN, no batch norm.</summary>
    private static ModelSummary PaperCnnSummary(ulong seed)
    {
        using var compute = new ComputeContext(1);
        var model = Trainer.BuildModel(new TrainOptions { Seed = seed, Threads = 1, BatchSize = 1 }, 1, 28, 28, MeProp.Data.MnistFiles.Classes, compute);
        return new ModelSummary(model, [1, 28, 28]);
    }

    /// <summary>The multiply-adds of a network file's network (dense).</summary>
    private static ModelSummary NetworkSummary(NetworkSpec network, ulong seed)
    {
        using var compute = new ComputeContext(1);
        return new ModelSummary(NetworkFactory.Build(network, compute, seed), network.Input);
    }

    /// <summary>Builds the network file's model once with meProp on its layers, so a bad file or layer name fails before any timing.</summary>
    private static void CheckNetwork(NetworkSpec network, IReadOnlyList<string>? layerNames, ulong seed)
    {
        using var compute = new ComputeContext(1);
        var model = NetworkFactory.Build(network, compute, seed);
        MePropSetup.Attach(model, 0.5, 0, MeProp.Sparsity.DecayShape.Full, null, layerNames ?? StepConfig.DefaultMePropLayers(model), seed);
    }

    private static StepRecord Print(StepRecord record, MachineFigures machine)
    {
        var r = record.WithFigures(machine);
        string label = r.Engine == "torchsharp" ? "torchsharp dense" : Label(r);
        if (r.Steps == 0)
        {
            Console.WriteLine($"batch {r.Batch,3} threads {r.Threads}  {label,-37} {r.Note}");
            return r;
        }
        string layers = string.Join(" ", r.BackwardMsPerLayer.Where(p => p.Key.StartsWith("conv") || p.Key.StartsWith("fc") || p.Key.StartsWith("res")).Select(p => $"{p.Key} {p.Value:F2}"));
        string alloc = r.AllocatedBytesPerStep is double a ? $" alloc {a:F0} B/step" : "";
        string rate = r.DenseEquivalentGflops is double g
            ? $"  {g:F1} GFLOP/s{(r.Mode == "meprop" ? " dense-equiv" : "")} = {100 * r.FmaPeakFraction:F1}% of FMA peak" : "";
        string eval = r.EvalForwardMs is double e ? $"  eval forward {e:F2}" : "";
        Console.WriteLine($"batch {r.Batch,3} threads {r.Threads}  {label,-37} step {r.StepMs,7:F2} ms (p10 {r.StepMsP10:F2}, p90 {r.StepMsP90:F2})  forward {r.ForwardMs,6:F2}  backward {r.BackwardMs,6:F2}  update {r.UpdateMs,5:F2}{eval}{rate}  [{layers}]{alloc}");
        return r;
    }

    private static string Label(StepRecord r) =>
        (r.Topk is double k ? $"meprop {k:0.##} decay {r.Decay:0.##}" : "dense") + (r.BatchNorm ? " +bn" : "")
        + (r.ExactSparsity is ExactSparsity e ? $" exact {e.ToString().ToLowerInvariant()}" : "");

    /// <summary>
    /// Each of our configurations against libtorch and against our plain dense step (exact sparsity off,
    /// else the first dense one): how much the exact part (dense with exact sparsity) and the
    /// approximation (meProp) each take off.
    /// </summary>
    private static void PrintRatios(List<StepRecord> group)
    {
        var torch = group.Where(r => r.Engine == "torchsharp" && r.Steps > 0).Select(r => r.StepMs).ToArray();
        if (UnsteadyMachineNote(torch) is string note) Console.WriteLine($"    {note}");
        var torchEval = group.Where(r => r.Engine == "torchsharp" && r.EvalForwardMs is not null).Select(r => r.EvalForwardMs!.Value).ToArray();
        foreach (bool bn in group.Where(r => r.Engine == "meprop").Select(r => r.BatchNorm).Distinct())
        {
            var ours = group.Where(r => r.Engine == "meprop" && r.BatchNorm == bn).ToArray();
            var dense = ours.FirstOrDefault(r => r.Mode == "dense" && r.ExactSparsity == ExactSparsity.Off) ?? ours.FirstOrDefault(r => r.Mode == "dense");
            if (dense is null) continue;
            foreach (var r in ours)
            {
                var parts = new List<string>();
                if (torch.Length > 0 && !bn) parts.Add($"{r.StepMs / torch.Min():F2}x..{r.StepMs / torch.Max():F2}x torchsharp step");
                if (torchEval.Length > 0 && !bn && r.EvalForwardMs is double e)
                    parts.Add($"eval forward {e / torchEval.Min():F2}x..{e / torchEval.Max():F2}x torchsharp's");
                if (!ReferenceEquals(r, dense))
                    parts.Add($"step {r.StepMs / dense.StepMs:F3}x, backward {r.BackwardMs / dense.BackwardMs:F3}x {Label(dense)}");
                if (parts.Count > 0) Console.WriteLine($"    {Label(r)}: {string.Join(", ", parts)}");
            }
        }
    }

    /// <summary>
    /// Largest ratio between libtorch's step times before and after ours that is taken as a quiet machine:
    /// on a quiet 2-vCPU VM the two runs of one bench differed by up to 9%.
    /// </summary>
    internal const double SteadySpread = 1.15;

    /// <summary>
    /// A warning when libtorch's step, timed before and after our configurations, changed by more than
    /// <see cref="SteadySpread"/>: the machine's speed moved during the run, so its ratios are less certain
    /// than they look. Null when it held still (or libtorch ran fewer than twice).
    /// </summary>
    internal static string? UnsteadyMachineNote(IReadOnlyList<double> torchStepMs)
    {
        if (torchStepMs.Count < 2) return null;
        double min = torchStepMs.Min(), max = torchStepMs.Max();
        return max <= SteadySpread * min ? null
            : $"unsteady machine: libtorch's step took {min:F1} ms and {max:F1} ms in this run ({(max / min - 1) * 100:F0}% apart), "
              + "so its ratios carry that much noise; pause other work and run again for figures to keep";
    }

    private static Option<T[]> ListOption<T>(string name, string description, string defaults) where T : IParsable<T> => new(name)
    {
        Description = $"{description}, comma-separated (default {defaults})",
        CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? string.Join(",", result.Tokens.Select(t => t.Value)) : defaults;
            var values = new List<T>();
            foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (T.TryParse(part, System.Globalization.CultureInfo.InvariantCulture, out var v)) values.Add(v);
                else result.AddError($"{name}: '{part}' is not a valid value");
            }
            return values.ToArray();
        },
        DefaultValueFactory = result => defaults.Split(',').Select(p => T.Parse(p, System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
    };
}
