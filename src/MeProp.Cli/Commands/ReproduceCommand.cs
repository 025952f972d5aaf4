using System.CommandLine;
using System.Globalization;
using System.Text;
using MeProp.Data;
using MeProp.Models;
using MeProp.Threading;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>
/// `meprop reproduce`: the meProp-CNN paper's MNIST table. Trains the paper's network dense and with
/// meProp at each top-k ratio (decay as given), without and with batch norm, each in its own
/// directory under --out, and writes results.md with the test accuracy at the best dev epoch next to
/// the paper's figures. A run whose directory already holds a finished summary is skipped; one with a
/// checkpoint is resumed, so an interrupted reproduction continues where it stopped.
/// </summary>
internal static class ReproduceCommand
{
    // The paper's test accuracies (Wei et al. 2017, MNIST): dense baselines and the reported top-k range.
    private const string PaperDense = "0.9902", PaperDenseBatchNorm = "0.9928";
    private const string PaperMeProp = "0.9907-0.9927 (5-10%)", PaperMePropBatchNorm = "0.9914-0.9948 (5-10%)";

    public static Command Create()
    {
        var epochs = new Option<int>("--epochs") { Description = "Epochs per run (the best dev epoch is reported)", DefaultValueFactory = _ => 20 };
        epochs.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--epochs must be >= 1"); });
        var topks = new Option<double[]>("--topk")
        {
            Description = "meProp ratios to run, comma-separated (default 0.05,0.08,0.1)",
            CustomParser = result => ParseRatios(result.Tokens.Count == 0 ? "0.05,0.08,0.1" : string.Join(",", result.Tokens.Select(t => t.Value)), result),
            DefaultValueFactory = result => ParseRatios("0.05,0.08,0.1", result),
        };
        var decay = new Option<double>("--decay") { Description = "Running-gradient decay of the meProp runs (paper: 0.6)", DefaultValueFactory = _ => 0.6 };
        decay.Validators.Add(r => { double v = r.GetValueOrDefault<double>(); if (!(v >= 0 && v < 1)) r.AddError("--decay must be in [0, 1)"); });
        var batchNorm = new Option<string>("--batch-norm") { Description = "without, with or both", DefaultValueFactory = _ => "both" };
        batchNorm.AcceptOnlyFromAmong("without", "with", "both");
        var seed = new Option<ulong>("--seed") { Description = "Seed of every run", DefaultValueFactory = _ => 1UL };
        var devSize = new Option<int>("--dev-size") { Description = "Training images held out as the dev split (the first N)", DefaultValueFactory = _ => 5000 };
        devSize.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 0) r.AddError("--dev-size must be >= 0"); });
        var maxTrain = new Option<int?>("--max-train") { Description = "Use only the first N training images (quick check of the pipeline)" };
        var output = new Option<string>("--out") { Description = "Directory for the runs and results.md", DefaultValueFactory = _ => "runs/reproduce" };
        var threads = CommonOptions.Threads();
        var data = CommonOptions.DataDirectory();
        var command = new Command("reproduce", "Train the paper's grid (dense and meProp top-k, with and without batch norm) and tabulate test accuracy against the paper")
        {
            epochs, topks, decay, batchNorm, seed, devSize, maxTrain, output, threads, data,
        };
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            string root = parse.GetValue(output)!;
            var batchNorms = parse.GetValue(batchNorm) switch { "with" => new[] { true }, "without" => new[] { false }, _ => new[] { false, true } };
            var runs = new List<(string Name, TrainOptions Options)>();
            foreach (bool bn in batchNorms)
                foreach (double? k in new double?[] { null }.Concat(parse.GetValue(topks)!.Select(v => (double?)v)))
                {
                    var options = new TrainOptions
                    {
                        ModelOptions = new ModelOptions { BatchNorm = bn },
                        Epochs = parse.GetValue(epochs),
                        Seed = parse.GetValue(seed),
                        Threads = parse.GetValue(threads),
                        DevSize = parse.GetValue(devSize),
                        MaxTrain = parse.GetValue(maxTrain),
                        TopK = k,
                        Decay = k is null ? 0 : parse.GetValue(decay),
                    };
                    options.Validate();
                    string name = (k is double r ? $"meprop-{(r * 100).ToString("0.##", CultureInfo.InvariantCulture)}" : "dense") + (bn ? "-bn" : "");
                    runs.Add((name, options));
                }
            var mnist = MnistFiles.Load(CommonOptions.ResolveData(parse.GetValue(data)));
            var results = new List<(string Name, TrainOptions Options, TrainSummary Summary)>();
            foreach (var (name, options) in runs)
            {
                string directory = Path.Combine(root, name);
                string summaryPath = Path.Combine(directory, Trainer.SummaryFile);
                string checkpoint = Path.Combine(directory, Trainer.LastCheckpoint);
                using var compute = new ComputeContext(options.Threads);
                var split = DatasetSplit.Create(mnist.Training, options.DevSize, options.MaxTrain);
                var trainer = new Trainer(options, compute, split, mnist.Test, directory);
                if (File.Exists(checkpoint))
                {
                    trainer.Resume(checkpoint);
                    if (trainer.Progress.EpochsCompleted >= options.Epochs && File.Exists(summaryPath))
                        Console.WriteLine($"{name}: finished earlier, kept");
                    else
                        Console.WriteLine($"{name}: resuming after epoch {trainer.Progress.EpochsCompleted}");
                }
                else Console.WriteLine($"{name}: training {options.Epochs} epoch(s)");
                results.Add((name, options, trainer.Run(new ConsoleProgress())));
            }
            string table = ResultsTable(results);
            AtomicFile.WriteAllText(Path.Combine(root, "results.md"), table);
            Console.WriteLine();
            Console.Write(table);
            return 0;
        }));
        return command;
    }

    private static double[] ParseRatios(string text, System.CommandLine.Parsing.ArgumentResult result)
    {
        var values = new List<double>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (double.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v > 0 && v <= 1) values.Add(v);
            else result.AddError($"--topk: '{part}' is not a ratio in (0, 1]");
        }
        return values.ToArray();
    }

    private static string ResultsTable(List<(string Name, TrainOptions Options, TrainSummary Summary)> results)
    {
        var text = new StringBuilder();
        text.AppendLine("| run | top-k | decay | batch norm | epochs | best epoch | dev accuracy | test accuracy | paper |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var (name, options, summary) in results)
        {
            bool bn = options.ModelOptions.BatchNorm;
            string paper = options.TopK is null ? (bn ? PaperDenseBatchNorm : PaperDense) : (bn ? PaperMePropBatchNorm : PaperMeProp);
            string topk = options.TopK is double k ? k.ToString("0.##", CultureInfo.InvariantCulture) : "dense";
            string dev = summary.DevAccuracy is double d ? d.ToString("F4", CultureInfo.InvariantCulture) : "n/a";
            text.AppendLine(FormattableString.Invariant(
                $"| {name} | {topk} | {options.Decay:0.##} | {(bn ? "yes" : "no")} | {summary.EpochsCompleted} | {summary.BestEpoch} | {dev} | {summary.TestAccuracy:F4} | {paper} |"));
        }
        return text.ToString();
    }
}
