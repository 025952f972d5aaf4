using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MeProp.Cli.Plotting;
using MeProp.Cli.Reproduction;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>One configuration of a comparison: its name and its runs (one per seed, in seed order).</summary>
internal sealed record ComparisonGroup(string Name, IReadOnlyList<string> Directories);

/// <summary>A configuration's row of `meprop compare`'s results.json; per-run lists in the order the runs were given.</summary>
internal sealed record ComparisonRow
{
    public required string Name { get; init; }
    public required IReadOnlyList<string> Runs { get; init; }
    public required IReadOnlyList<int> Epochs { get; init; }
    public required IReadOnlyList<int> BestEpoch { get; init; }
    public required IReadOnlyList<double> DevAccuracy { get; init; }
    public required IReadOnlyList<double> TestAccuracy { get; init; }
    public required IReadOnlyList<double> FinalTestAccuracy { get; init; }
    public required IReadOnlyList<double> MeanEpochSeconds { get; init; }
    public required IReadOnlyList<double> MeanBackwardSeconds { get; init; }
    /// <summary>The optimizer's own pass (an update fused into the backward counts as backward).</summary>
    public required IReadOnlyList<double> MeanUpdateSeconds { get; init; }
    /// <summary>Forward, backward and update: an epoch without its evaluation.</summary>
    public required IReadOnlyList<double> MeanTrainingSeconds { get; init; }
    public double TestMean { get; init; }
    public double TestStd { get; init; }
    /// <summary>Mean of this row's best-dev test accuracy minus the first row's, paired run by run; null for the first row.</summary>
    public double? TestDeltaMean { get; init; }
    /// <summary>Half-width of the 95% paired t interval of <see cref="TestDeltaMean"/> (null with fewer than two pairs).</summary>
    public double? TestDeltaHalfWidth { get; init; }
}

/// <summary>
/// `meprop compare`: configurations' runs side by side: per configuration the test accuracy at the best
/// dev epoch (mean ± std over its runs, range), its difference from the first configuration paired run
/// by run (the same seed gives the same initial weights and data order) with a 95% t interval, the mean
/// epoch and backward times the runs recorded, as results.md and results.json, and the dev-accuracy and
/// training-loss curves (mean with a min-max band) as PNG and SVG.
/// </summary>
internal static class CompareCommand
{
    public static Command Create()
    {
        var groups = new Option<string[]>("--group")
        {
            Description = "A configuration as NAME=RUN_DIR,RUN_DIR,... (its runs, one per seed, in the same seed order in every group); repeat for each configuration, the first one being the baseline",
            Arity = ArgumentArity.OneOrMore,
            Required = true,
        };
        var output = new Option<string>("--out") { Description = "Directory for results.md, results.json and the charts", Required = true };
        var title = new Option<string>("--title") { Description = "Heading of results.md", DefaultValueFactory = _ => "Comparison" };
        var timing = new Option<string?>("--timing-note") { Description = "What the recorded times are (machine, load), printed under the table" };
        var timesFrom = new Option<int>("--times-from-epoch") { Description = "Average the times over epochs from this one on (e.g. 2 to leave out a dense warm-up epoch)", DefaultValueFactory = _ => 1 };
        timesFrom.Require(v => v >= 1, "--times-from-epoch must be >= 1");
        var epochs = new Option<int?>("--epochs") { Description = "Read every run as far as this epoch (runs trained further are cut there); default: each run whole" };
        epochs.Require(v => v is null or >= 1, "--epochs must be >= 1");
        var command = new Command("compare", "Compare configurations' runs: best-dev test accuracy (mean ± std, paired difference with a 95% interval), epoch times, curves")
        {
            groups, output, title, timing, timesFrom, epochs,
        };
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            var parsed = parse.GetValue(groups)!.Select(ParseGroup).ToList();
            if (parsed.Select(g => g.Name).Distinct().Count() != parsed.Count) throw new ArgumentException("--group: two configurations have the same name");
            string root = parse.GetValue(output)!;
            Directory.CreateDirectory(root);
            int? epochLimit = parse.GetValue(epochs);
            var records = parsed.Select(g => g.Directories.Select(Read).Select(r => epochLimit is int n ? r.Truncated(n) : r).ToList()).ToList();
            var lengths = records.SelectMany(r => r).Select(r => r.EpochsCompleted).Distinct().ToList();
            // A best epoch over 3 epochs against one over 30 is no like-for-like comparison; say so.
            if (lengths.Count > 1)
                Console.Error.WriteLine($"note: the runs have {lengths.Min()} to {lengths.Max()} epochs, so each one's best dev epoch is taken over its own span; --epochs {lengths.Min()} reads them alike");
            RequireSeedsPaired(parsed);
            var rows = Rows(parsed, records, parse.GetValue(timesFrom));
            AtomicFile.WriteAllText(Path.Combine(root, "results.json"), JsonSerializer.Serialize(rows, Json.Options) + "\n");
            AtomicFile.WriteAllText(Path.Combine(root, "results.md"), Markdown(parse.GetValue(title)!, rows, parse.GetValue(timing), parse.GetValue(timesFrom)));
            Console.WriteLine($"wrote {Path.Combine(root, "results.md")} and results.json");
            foreach (var metric in Metric.All)
            {
                var curves = parsed.Zip(records).Select(p => Curve.Summarise(p.First.Name, p.Second, metric)).ToList();
                foreach (string path in TrainingCurves.Write(metric, curves, metric.Title, Path.Combine(root, metric.Name)))
                    Console.WriteLine($"wrote {path}");
            }
            return 0;
        }));
        return command;
    }

    private static ComparisonGroup ParseGroup(string text)
    {
        int equals = text.IndexOf('=');
        if (equals < 1 || equals == text.Length - 1) throw new ArgumentException($"--group '{text}': expected NAME=RUN_DIR,RUN_DIR,...");
        var directories = text[(equals + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (directories.Length == 0) throw new ArgumentException($"--group '{text}': no run directories after '='");
        return new ComparisonGroup(text[..equals].Trim(), directories);
    }

    private static RunRecord Read(string directory)
    {
        if (!File.Exists(Path.Combine(directory, Trainer.MetricsFile)))
            throw new ArgumentException($"{directory}: no {Trainer.MetricsFile} here (not a run directory of 'meprop train')");
        var record = RunRecord.Read(directory);
        if (record.EpochsCompleted == 0) throw new ArgumentException($"{directory}: {Trainer.MetricsFile} has no completed epoch yet");
        return record;
    }

    /// <summary>
    /// The seed a run recorded: summary.json's config.seed, or while it trains (no summary yet) its last
    /// checkpoint's configuration; null where it recorded none.
    /// </summary>
    internal static ulong? RecordedSeed(string directory)
    {
        string path = Path.Combine(directory, Trainer.SummaryFile);
        if (!File.Exists(path))
        {
            string checkpoint = Path.Combine(directory, Trainer.LastCheckpoint);
            try { return File.Exists(checkpoint) ? Checkpoint.ReadOptions(checkpoint).Seed : null; }
            catch (CheckpointFormatException) { return null; }
        }
        try
        {
            using var summary = JsonDocument.Parse(File.ReadAllText(path));
            return summary.RootElement.TryGetProperty("config", out var config) && config.TryGetProperty("seed", out var seed)
                   && seed.TryGetUInt64(out ulong value) ? value : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Runs are paired by position: where both runs of a pair recorded their seed, it must be the same.</summary>
    private static void RequireSeedsPaired(IReadOnlyList<ComparisonGroup> groups)
    {
        var baseline = groups[0].Directories.Select(RecordedSeed).ToList();
        foreach (var group in groups.Skip(1))
            for (int i = 0; i < Math.Min(group.Directories.Count, baseline.Count); i++)
                if (RecordedSeed(group.Directories[i]) is ulong seed && baseline[i] is ulong baselineSeed && seed != baselineSeed)
                    throw new ArgumentException($"--group {group.Name}: run {i + 1} ({group.Directories[i]}) has seed {seed}, the baseline's run {i + 1} " +
                                                $"({groups[0].Directories[i]}) seed {baselineSeed}; runs are paired by position: give them in the same seed order");
    }

    internal static List<ComparisonRow> Rows(IReadOnlyList<ComparisonGroup> groups, IReadOnlyList<IReadOnlyList<RunRecord>> records, int timesFromEpoch = 1)
    {
        List<EpochMetrics> Timed(RunRecord run)
        {
            var epochs = run.Epochs.Where(e => e.Epoch >= timesFromEpoch).ToList();
            return epochs.Count > 0 ? epochs : throw new ArgumentException($"--times-from-epoch {timesFromEpoch}: a run has only {run.EpochsCompleted} epochs");
        }
        var rows = new List<ComparisonRow>();
        for (int g = 0; g < groups.Count; g++)
        {
            var runs = records[g];
            var test = runs.Select(r => r.Best.TestAccuracy).ToList();
            (double Mean, double HalfWidth)? delta = null;
            if (g > 0)
            {
                var baseline = records[0].Select(r => r.Best.TestAccuracy).ToList();
                if (baseline.Count != test.Count)
                    throw new ArgumentException($"--group {groups[g].Name} has {test.Count} runs and the baseline {groups[0].Name} {baseline.Count}: runs are paired by position");
                delta = SeedStatistics.PairedDifference(test, baseline);
            }
            rows.Add(new ComparisonRow
            {
                Name = groups[g].Name,
                Runs = groups[g].Directories,
                Epochs = runs.Select(r => r.EpochsCompleted).ToList(),
                BestEpoch = runs.Select(r => r.Best.Epoch).ToList(),
                DevAccuracy = runs.Select(r => r.Best.DevAccuracy ?? double.NaN).ToList(),
                TestAccuracy = test,
                FinalTestAccuracy = runs.Select(r => r.Last.TestAccuracy).ToList(),
                MeanEpochSeconds = runs.Select(r => Math.Round(Timed(r).Average(e => e.EpochSeconds), 3)).ToList(),
                MeanBackwardSeconds = runs.Select(r => Math.Round(Timed(r).Average(e => e.BackwardSeconds), 3)).ToList(),
                MeanUpdateSeconds = runs.Select(r => Math.Round(Timed(r).Average(e => e.UpdateSeconds), 3)).ToList(),
                MeanTrainingSeconds = runs.Select(r => Math.Round(Timed(r).Average(e => e.ForwardSeconds + e.BackwardSeconds + e.UpdateSeconds), 3)).ToList(),
                TestMean = SeedStatistics.Mean(test),
                TestStd = SeedStatistics.StandardDeviation(test),
                TestDeltaMean = delta?.Mean,
                TestDeltaHalfWidth = delta is { HalfWidth: var h } && !double.IsNaN(h) ? h : null,
            });
        }
        return rows;
    }

    private static string Seconds(IReadOnlyList<double> values) => values.Average().ToString("0.0", CultureInfo.InvariantCulture);

    private static string Percent(double fraction) => (100 * fraction).ToString("0.00", CultureInfo.InvariantCulture);

    internal static string Markdown(string title, IReadOnlyList<ComparisonRow> rows, string? timingNote, int timesFromEpoch = 1)
    {
        var md = new StringBuilder();
        md.AppendLine($"# {title}").AppendLine();
        md.AppendLine("Test accuracy at each run's best dev epoch (%, mean ± sample std over the runs, min-max); Δ is the paired difference from");
        md.AppendLine($"the first configuration ({rows[0].Name}) in points with its 95% t interval. Times are the runs' own records, mean seconds per");
        md.AppendLine("epoch: the whole epoch, its training part (forward, backward, update: no evaluation), the backward (with any update fused");
        md.AppendLine($"into it) and the optimizer's own pass{(timesFromEpoch > 1 ? $", over epochs {timesFromEpoch} on" : "")}.").AppendLine();
        md.AppendLine("| configuration | runs | epochs | best epoch | test (best dev) | range | Δ vs first | final test | epoch s | training s | backward s | update s |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
        {
            string std = double.IsNaN(r.TestStd) ? "" : $" ± {Percent(r.TestStd)}";
            string delta = r.TestDeltaMean is double d
                ? (r.TestDeltaHalfWidth is double h ? $"{Percent(d)} ± {Percent(h)}" : Percent(d))
                : "—";
            md.AppendLine($"| {r.Name} | {r.Runs.Count} | {string.Join("/", r.Epochs.Distinct())} | {string.Join(", ", r.BestEpoch)} | {Percent(r.TestMean)}{std} " +
                          $"| {Percent(r.TestAccuracy.Min())}-{Percent(r.TestAccuracy.Max())} | {delta} | {Percent(r.FinalTestAccuracy.Average())} " +
                          $"| {Seconds(r.MeanEpochSeconds)} | {Seconds(r.MeanTrainingSeconds)} | {Seconds(r.MeanBackwardSeconds)} | {Seconds(r.MeanUpdateSeconds)} |");
        }
        if (timingNote is not null) md.AppendLine().AppendLine(timingNote);
        md.AppendLine().AppendLine("Curves: dev-accuracy.png/.svg and train-loss.png/.svg (mean over runs, band min-max).");
        return md.ToString();
    }
}
