using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using MeProp.Cli.Reproduction;
using MeProp.Data;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>
/// `meprop reproduce`: the meProp-CNN paper's MNIST Tables 2 and 3 (dense, top-k 5/8/10% with decay 0 and
/// 0.6, and a random-k control, without and with batch norm) over several seeds, resumable, with
/// results.json and results.md derived from the runs' metrics.
/// </summary>
internal static class ReproduceCommand
{
    private const string TimingNote =
        "s/epoch is the mean wall-clock time of an epoch (training and evaluation) as the runs were trained: --jobs of " +
        "them at a time, beside whatever else the machine ran, so it is not a benchmark (docs/PERFORMANCE.md has timings " +
        "taken on a quiet machine).";

    public static Command Create()
    {
        var tables = ListOption("--tables", "Tables to run: 2 (without batch norm), 3 (with batch norm)", "2,3", int.Parse, v => v is 2 or 3);
        var rows = new Option<string[]?>("--rows")
        {
            Description = "Rows to run, comma-separated (default all): " + string.Join(", ", ReproductionGrid.All.Where(c => c.Table == 2).Select(c => c.Row)),
            CustomParser = result => result.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray(),
        };
        rows.Validators.Add(r =>
        {
            foreach (string row in r.GetValueOrDefault<string[]?>() ?? [])
                if (!ReproductionGrid.All.Any(c => c.Row == row)) r.AddError($"--rows: unknown row '{row}'");
        });
        var seeds = ListOption("--seeds", "Seeds of every row; the report reads these (and the headline seeds) only", "1,2,3", ulong.Parse, _ => true);
        var headlineSeeds = ListOption("--headline-seeds", "Extra seeds for the dense and top5-d0.6 rows, run after all others (empty: none)", "4,5", ulong.Parse, _ => true);
        var epochs = new Option<int>("--epochs") { Description = "Epochs per run (the best dev epoch is reported)", DefaultValueFactory = _ => 30 };
        epochs.Require(v => v >= 1, "--epochs must be >= 1");
        var jobs = new Option<int>("--jobs") { Description = "Runs trained at the same time", DefaultValueFactory = _ => 1 };
        jobs.Require(v => v is >= 1 and <= 64, "--jobs must be between 1 and 64");
        var threads = new Option<int?>("--threads") { Description = "Threads of each run (default: cores / jobs)" };
        threads.Require(v => v is null or (>= 1 and <= 256), "--threads must be between 1 and 256");
        var devSize = new Option<int>("--dev-size") { Description = "Training images held out as the dev split (the first N)", DefaultValueFactory = _ => 5000 };
        devSize.Require(v => v >= 0, "--dev-size must be >= 0");
        var maxTrain = new Option<int?>("--max-train") { Description = "Use only the first N training images (quick check of the pipeline)" };
        maxTrain.Require(v => v is null or >= 1, "--max-train must be >= 1");
        var output = new Option<string>("--out") { Description = "Directory for results.json, results.md and runs/CONFIG/seed-N/{metrics.jsonl,summary.json}", DefaultValueFactory = _ => "experiments/reproduce" };
        var checkpoints = new Option<string?>("--checkpoints") { Description = "Directory for the runs' checkpoints, which resume needs (default: ~/.cache/meprop/reproduce/ and the --out path)" };
        var reportOnly = new Option<bool>("--report-only") { Description = "Only rebuild results.json and results.md from the runs there are" };
        var data = CommonOptions.DataDirectory();
        var command = new Command("reproduce", "Train the paper's Tables 2 and 3 over several seeds (resumable) and tabulate them against the paper")
        {
            tables, rows, seeds, headlineSeeds, epochs, jobs, threads, devSize, maxTrain, output, checkpoints, reportOnly, data,
        };
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            string root = parse.GetValue(output)!;
            string runsRoot = Path.Combine(root, "runs");
            int epochCount = parse.GetValue(epochs);
            var chosenRows = parse.GetValue(rows);
            var configs = ReproductionGrid.All
                .Where(c => parse.GetValue(tables)!.Contains(c.Table) && (chosenRows is not { Length: > 0 } || chosenRows.Contains(c.Row)))
                .ToList();
            // The report holds every row with runs on disk, not only the rows trained now: a narrowed invocation
            // (--rows, --tables) adds to the results instead of replacing them with its part.
            var reported = ReproductionGrid.All.Where(c => configs.Contains(c) || Directory.Exists(Path.Combine(runsRoot, c.Name))).ToList();
            void Report()
            {
                var results = ReproductionReport.Collect(runsRoot, reported, epochCount, parse.GetValue(seeds)!, parse.GetValue(headlineSeeds)!);
                Directory.CreateDirectory(root);
                AtomicFile.WriteAllText(Path.Combine(root, ReproductionReport.JsonFile), ReproductionReport.ToJson(results));
                AtomicFile.WriteAllText(Path.Combine(root, ReproductionReport.MarkdownFile), ReproductionReport.ToMarkdown(results, TimingNote));
                Plotting.ReproductionCurves.Write(root, runsRoot, reported, results);
            }
            if (parse.GetValue(reportOnly))
            {
                Report();
                Console.WriteLine($"wrote {Path.Combine(root, ReproductionReport.MarkdownFile)}");
                return 0;
            }

            var runs = parse.GetValue(seeds)!.SelectMany(seed => configs.Select(c => new ReproductionRun(c, seed)))
                .Concat(parse.GetValue(headlineSeeds)!.SelectMany(seed => configs.Where(c => c.IsHeadline).Select(c => new ReproductionRun(c, seed))))
                .Distinct()
                .ToList();
            int jobCount = parse.GetValue(jobs);
            int threadCount = parse.GetValue(threads) ?? Math.Max(1, Environment.ProcessorCount / jobCount);
            string checkpointRoot = parse.GetValue(checkpoints) ?? DefaultCheckpointRoot(root);
            var mnist = CommonOptions.LoadData(parse.GetValue(data));
            DatasetSplit.Create(mnist.Training, parse.GetValue(devSize), parse.GetValue(maxTrain));
            Console.WriteLine($"checkpoints in {checkpointRoot}; results in {root}");
            var runner = new ReproductionRunner(runsRoot, checkpointRoot, mnist, epochCount, threadCount, parse.GetValue(devSize), parse.GetValue(maxTrain));
            runner.RunAll(runs, jobCount, Report);
            Report();
            Console.WriteLine();
            Console.Write(File.ReadAllText(Path.Combine(root, ReproductionReport.MarkdownFile)));
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// Checkpoints live outside the results directory (which is committed) and outside the source tree (which
    /// may be laid anew), under the user's cache, keyed by the results directory's full path.
    /// </summary>
    private static string DefaultCheckpointRoot(string resultsRoot)
    {
        string home = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } cache
            ? cache
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        string key = Path.GetFullPath(resultsRoot).TrimEnd(Path.DirectorySeparatorChar).Replace(Path.DirectorySeparatorChar, '_').TrimStart('_');
        return Path.Combine(home, "meprop", "reproduce", key);
    }

    private static Option<T[]> ListOption<T>(string name, string description, string defaultValue, Func<string, IFormatProvider, T> parse, Func<T, bool> valid)
    {
        T[] Parse(ArgumentResult result, string text)
        {
            var values = new List<T>();
            foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                try
                {
                    T value = parse(part, CultureInfo.InvariantCulture);
                    if (valid(value)) values.Add(value);
                    else result.AddError($"{name}: '{part}' is not allowed");
                }
                catch (Exception e) when (e is FormatException or OverflowException) { result.AddError($"{name}: '{part}' is not a number"); }
            }
            return values.Distinct().ToArray();
        }
        return new Option<T[]>(name)
        {
            Description = $"{description} (default {defaultValue})",
            CustomParser = result => Parse(result, string.Join(",", result.Tokens.Select(t => t.Value))),
            DefaultValueFactory = result => Parse(result, defaultValue),
        };
    }
}
