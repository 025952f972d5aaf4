using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using MeProp.Models;
using MeProp.Sparsity;

namespace MeProp.Cli.Reproduction;

/// <summary>One row of results.json: a configuration with its per-seed results, lists in seed order.</summary>
internal sealed record ReproductionRow
{
    [JsonPropertyName("table")] public int Table { get; init; }
    [JsonPropertyName("row")] public required string Row { get; init; }
    [JsonPropertyName("topk")] public double? TopK { get; init; }
    [JsonPropertyName("decay")] public double? Decay { get; init; }
    [JsonPropertyName("selection")] public string? Selection { get; init; }
    [JsonPropertyName("batch_norm")] public bool BatchNorm { get; init; }
    /// <summary>The epochs each run is to train.</summary>
    [JsonPropertyName("epochs")] public int Epochs { get; init; }
    [JsonPropertyName("seeds")] public List<ulong> Seeds { get; init; } = [];
    /// <summary>The seeds this row is to have (the command's --seeds, and --headline-seeds for the headline rows).</summary>
    [JsonPropertyName("planned_seeds")] public List<ulong> PlannedSeeds { get; init; } = [];
    /// <summary>Epochs each seed has completed so far (equal to <see cref="Epochs"/> when finished).</summary>
    [JsonPropertyName("epochs_completed")] public List<int> EpochsCompleted { get; init; } = [];
    [JsonPropertyName("best_epoch")] public List<int> BestEpoch { get; init; } = [];
    [JsonPropertyName("dev_accuracy")] public List<double> DevAccuracy { get; init; } = [];
    [JsonPropertyName("test_accuracy")] public List<double> TestAccuracy { get; init; } = [];
    [JsonPropertyName("final_test_accuracy")] public List<double> FinalTestAccuracy { get; init; } = [];
    /// <summary>Mean wall-clock seconds of an epoch (training and evaluation) over the seeds' epochs.</summary>
    [JsonPropertyName("mean_epoch_seconds")] public double? MeanEpochSeconds { get; init; }
    [JsonPropertyName("paper")] public PaperRow? Paper { get; init; }
    /// <summary>
    /// Per meProp layer, mean over seeds of [first epoch, last completed epoch]: the fraction of dL/dy's
    /// entries that were non-zero before the selection. Empty for dense rows.
    /// </summary>
    [JsonPropertyName("gradient_density")] public Dictionary<string, double[]> GradientDensity { get; init; } = [];
    /// <summary>
    /// Per meProp layer, mean over seeds of [first epoch, last completed epoch]: of dL/dy's non-zero entries,
    /// the fraction the backward used (its multiply-adds over the dense backward's, over the density).
    /// 1 means the selection dropped nothing that was not zero.
    /// </summary>
    [JsonPropertyName("nonzero_kept")] public Dictionary<string, double[]> NonZeroKept { get; init; } = [];

    /// <summary>A planned seed is missing or a run has not finished its epochs.</summary>
    [JsonIgnore] public bool Partial => Seeds.Count == 0 || !PlannedSeeds.All(Seeds.Contains) || EpochsCompleted.Any(e => e < Epochs);
}

/// <summary>
/// Turns the run directories of a reproduction (CONFIG/seed-N/metrics.jsonl under a root) into
/// results.json and results.md: per configuration the per-seed results, mean ± standard deviation and
/// range, and the paired difference to the same table's dense baseline with its 95% interval.
/// </summary>
internal static class ReproductionReport
{
    public const string JsonFile = "results.json";
    public const string MarkdownFile = "results.md";

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        // Runs without a dev split have no dev accuracy: NaN, written as "NaN" as in the runs' own files.
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>
    /// Reads the runs of <paramref name="configs"/> under <paramref name="runsRoot"/>, each as far as <paramref name="epochs"/>;
    /// seeds without a metrics file, and seeds not planned, are left out. <paramref name="plannedSeeds"/> are the seeds every row is to have,
    /// <paramref name="headlineSeeds"/> the extra ones of the headline rows: a row without one of its planned seeds is partial.
    /// </summary>
    public static List<ReproductionRow> Collect(string runsRoot, IEnumerable<ReproductionConfig> configs, int epochs, IReadOnlyList<ulong> plannedSeeds,
        IReadOnlyList<ulong>? headlineSeeds = null)
    {
        var rows = new List<ReproductionRow>();
        foreach (var config in configs)
        {
            var seeds = new List<(ulong Seed, RunRecord Record)>();
            var planned = config.IsHeadline ? plannedSeeds.Union(headlineSeeds ?? []).ToList() : plannedSeeds.ToList();
            string configDirectory = Path.Combine(runsRoot, config.Name);
            if (Directory.Exists(configDirectory))
                foreach (string directory in Directory.GetDirectories(configDirectory, "seed-*"))
                    if (ulong.TryParse(Path.GetFileName(directory)["seed-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out ulong seed)
                        && planned.Contains(seed) && RunRecord.Read(directory) is { EpochsCompleted: > 0 } record)
                        seeds.Add((seed, record.Truncated(epochs)));
            seeds.Sort((a, b) => a.Seed.CompareTo(b.Seed));
            rows.Add(new ReproductionRow
            {
                Table = config.Table,
                Row = config.Row,
                TopK = config.TopK,
                Decay = config.Decay,
                Selection = config.TopK is null ? null : MePropSetup.Cli(config.Selection!.Value),
                BatchNorm = config.BatchNorm,
                Epochs = epochs,
                Seeds = seeds.Select(s => s.Seed).ToList(),
                PlannedSeeds = planned,
                EpochsCompleted = seeds.Select(s => s.Record.EpochsCompleted).ToList(),
                BestEpoch = seeds.Select(s => s.Record.Best.Epoch).ToList(),
                DevAccuracy = seeds.Select(s => s.Record.Best.DevAccuracy ?? double.NaN).ToList(),
                TestAccuracy = seeds.Select(s => s.Record.Best.TestAccuracy).ToList(),
                FinalTestAccuracy = seeds.Select(s => s.Record.Last.TestAccuracy).ToList(),
                MeanEpochSeconds = seeds.Count == 0 ? null : seeds.SelectMany(s => s.Record.Epochs).Average(e => e.EpochSeconds),
                Paper = config.Paper,
                GradientDensity = FirstAndLast(seeds.Select(s => s.Record).ToList(), e => e.GradientDensity),
                NonZeroKept = FirstAndLast(seeds.Select(s => s.Record).ToList(), NonZeroKeptByLayer),
            });
        }
        return rows;
    }

    /// <summary>Per layer of an epoch: the backward's share of the dense multiply-adds over the density, that is the share of non-zero entries used.</summary>
    private static Dictionary<string, double> NonZeroKeptByLayer(MeProp.Training.EpochMetrics epoch) =>
        epoch.GradientDensity.Where(p => p.Value > 0 && epoch.DenseBackwardMacs.GetValueOrDefault(p.Key) > 0)
            .ToDictionary(p => p.Key, p => (double)epoch.BackwardMacs[p.Key] / epoch.DenseBackwardMacs[p.Key] / p.Value);

    /// <summary>Per layer, the mean over runs of [the first epoch's value, the last completed epoch's value].</summary>
    private static Dictionary<string, double[]> FirstAndLast(IReadOnlyList<RunRecord> runs, Func<MeProp.Training.EpochMetrics, Dictionary<string, double>> values)
    {
        var result = new Dictionary<string, double[]>();
        if (runs.Count == 0) return result;
        foreach (string layer in values(runs[0].Epochs[0]).Keys)
        {
            if (!runs.All(r => values(r.Epochs[0]).ContainsKey(layer) && values(r.Last).ContainsKey(layer))) continue;
            result[layer] = [Math.Round(runs.Average(r => values(r.Epochs[0])[layer]), 5), Math.Round(runs.Average(r => values(r.Last)[layer]), 5)];
        }
        return result;
    }

    public static string ToJson(IReadOnlyList<ReproductionRow> rows) => JsonSerializer.Serialize(rows, JsonOptions) + "\n";

    /// <summary>
    /// The markdown report. <paramref name="timingNote"/> says under what load the epoch times were taken.
    /// </summary>
    public static string ToMarkdown(IReadOnlyList<ReproductionRow> rows, string timingNote)
    {
        var text = new StringBuilder();
        text.AppendLine($"# meProp-CNN on MNIST: a reproduction of Tables 2 and 3{(rows.Any(r => r.Partial) ? " (partial: runs unfinished)" : "")}");
        text.AppendLine();
        text.AppendLine("The paper's CNN (conv 5x5x32, pool, conv 5x5x64, pool, FC 1024, FC 10), Adam 1e-3, batch 10, the first");
        text.AppendLine("5,000 training images as dev; each run's result is the test accuracy at its best dev epoch. meProp rows");
        text.AppendLine("keep the top k of |dL/dy| per feature map of conv1 and conv2 (decay 0.6: on the running average of");
        text.AppendLine("|dL/dy|); random-k keeps k uniformly chosen entries per feature map (a control the paper did not run).");
        text.AppendLine("Accuracies in %: mean ± sample standard deviation over seeds, [min, max]; Δ is the paired difference to the");
        text.AppendLine("same table's dense baseline over the seeds both have, with its 95% t interval (each row's interval on its own,");
        text.AppendLine("not corrected for the several rows of a table). Generated by `meprop reproduce` from the committed");
        text.AppendLine("runs/CONFIG/seed-N/metrics.jsonl files.");
        text.AppendLine();
        foreach (var table in rows.GroupBy(r => r.Table))
        {
            var dense = table.FirstOrDefault(r => r.TopK is null);
            text.AppendLine(table.Key == 2 ? "## Table 2: without batch norm" : "## Table 3: with batch norm");
            text.AppendLine();
            text.AppendLine("| row | seeds | epochs | best epoch | dev | test | test range | Δ test vs dense | paper (epoch / dev / test) | s/epoch |");
            text.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
            foreach (var row in table)
            {
                string epochs = row.Seeds.Count == 0 ? "not started"
                    : row.EpochsCompleted.All(e => e >= row.Epochs) ? $"{row.Epochs}"
                    : row.EpochsCompleted.Min() == row.EpochsCompleted.Max() ? $"{row.EpochsCompleted[0]} of {row.Epochs} (partial)"
                    : $"{row.EpochsCompleted.Min()}-{row.EpochsCompleted.Max()} of {row.Epochs} (partial)";
                string seedCount = row.PlannedSeeds.All(row.Seeds.Contains) ? $"{row.Seeds.Count}" : $"{row.Seeds.Count} of {row.Seeds.Union(row.PlannedSeeds).Count()}";
                text.AppendLine($"| {row.Row} | {seedCount} | {epochs} | {Mean(row.BestEpoch.Select(e => (double)e).ToList(), "F1")} | " +
                                $"{Percent(row.DevAccuracy)} | {Percent(row.TestAccuracy)} | {Range(row.TestAccuracy)} | " +
                                $"{(row == dense || dense is null ? "" : Difference(row, dense))} | {Paper(row.Paper)} | " +
                                $"{(row.MeanEpochSeconds is double s ? s.ToString("F1", CultureInfo.InvariantCulture) : "")} |");
            }
            text.AppendLine();
            text.AppendLine(Verdict(table.ToList(), dense));
            text.AppendLine();
            var sparse = table.Where(r => r.NonZeroKept.Count > 0).ToList();
            if (sparse.Count > 0)
            {
                text.AppendLine("What the selection drops: per meProp layer, the share of dL/dy's entries that are non-zero (after ReLU and");
                text.AppendLine("pooling, before selection) and the share of those non-zero entries the backward used, first epoch → last");
                text.AppendLine("completed epoch, mean over seeds. Where the second is 100%, top-k kept every non-zero entry: the gradient was exact.");
                text.AppendLine();
                var layers = sparse.SelectMany(r => r.NonZeroKept.Keys).Distinct().ToList();
                text.AppendLine("| row | " + string.Join(" | ", layers.Select(l => $"{l} non-zero | {l} non-zeros used")) + " |");
                text.AppendLine("|---|" + string.Concat(layers.Select(_ => "---|---|")));
                foreach (var row in sparse)
                    text.AppendLine($"| {row.Row} | " + string.Join(" | ", layers.Select(l => $"{Shares(row.GradientDensity, l)} | {Shares(row.NonZeroKept, l)}")) + " |");
                text.AppendLine();
            }
        }
        text.AppendLine(timingNote);
        return text.ToString();
    }

    /// <summary>Mean and standard deviation of accuracies, in percent.</summary>
    private static string Percent(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return "";
        if (values.Any(double.IsNaN)) return "—";   // runs without a dev split
        var percent = values.Select(v => 100 * v).ToList();
        double std = SeedStatistics.StandardDeviation(percent);
        return double.IsNaN(std) ? F(SeedStatistics.Mean(percent), 2) : $"{F(SeedStatistics.Mean(percent), 2)} ± {F(std, 2)}";
    }

    private static string Mean(IReadOnlyList<double> values, string format) =>
        values.Count == 0 ? "" : SeedStatistics.Mean(values).ToString(format, CultureInfo.InvariantCulture);

    private static string Range(IReadOnlyList<double> values) =>
        values.Count == 0 ? "" : $"[{F(100 * values.Min(), 2)}, {F(100 * values.Max(), 2)}]";

    /// <summary>The paired difference row - dense (test accuracy, percentage points) over their common seeds.</summary>
    private static string Difference(ReproductionRow row, ReproductionRow dense)
    {
        var (mean, halfWidth, pairs) = PairedTest(row, dense);
        if (pairs == 0) return "";
        return double.IsNaN(halfWidth)
            ? $"{Signed(mean)} (1 seed)"
            : $"{Signed(mean)} [{Signed(mean - halfWidth)}, {Signed(mean + halfWidth)}] (n={pairs})";
    }

    /// <summary>Paired difference row - baseline of test accuracies in percentage points over their common seeds, and its 95% half-width.</summary>
    internal static (double Mean, double HalfWidth, int Pairs) PairedTest(ReproductionRow row, ReproductionRow baseline)
    {
        var common = row.Seeds.Intersect(baseline.Seeds).ToList();
        if (common.Count == 0) return (double.NaN, double.NaN, 0);
        var a = common.Select(s => 100 * row.TestAccuracy[row.Seeds.IndexOf(s)]).ToList();
        var b = common.Select(s => 100 * baseline.TestAccuracy[baseline.Seeds.IndexOf(s)]).ToList();
        var (mean, halfWidth) = SeedStatistics.PairedDifference(a, b);
        return (mean, halfWidth, common.Count);
    }

    private static string Paper(PaperRow? paper)
    {
        if (paper is null) return "not in the paper";
        if (paper.TestRange is { } range) return $"test {F(100 * range[0], 2)}-{F(100 * range[1], 2)} over its top-k rows";
        string Part(double? v, int digits, bool percent) => v is double x ? F(percent ? 100 * x : x, digits) : "?";
        return $"{(paper.Epoch is int e ? e.ToString(CultureInfo.InvariantCulture) : "?")} / {Part(paper.Dev, 2, true)} / {Part(paper.Test, 2, true)}";
    }

    /// <summary>A plain statement of what the table shows, derived from its numbers.</summary>
    private static string Verdict(List<ReproductionRow> table, ReproductionRow? dense)
    {
        var lines = new List<string>();
        if (table.Any(r => r.Partial))
            lines.Add($"Partial: {string.Join(", ", table.Where(r => r.Partial).Select(r => r.Row))} (fewer seeds or epochs than planned); the statements below hold for the runs so far.");
        if (dense is { TestAccuracy.Count: > 0 })
        {
            double mean = 100 * dense.TestAccuracy.Average();
            string paper = dense.Paper?.Test is double p ? $" (paper {F(100 * p, 2)}%)" : "";
            lines.Add($"Dense baseline: {F(mean, 2)}%{paper}.");
            foreach (var row in table.Where(r => r != dense && r.Seeds.Count > 0))
            {
                var (diff, halfWidth, pairs) = PairedTest(row, dense);
                if (pairs < 2) continue;
                string verdict = diff - halfWidth > 0 ? "better than dense"
                    : diff + halfWidth < 0 ? "worse than dense"
                    : "no difference from dense that the seeds can resolve";
                string inRange = row.Paper?.TestRange is { } range ? $"; {RangePosition(row.TestAccuracy.Average(), range)} the paper's meProp range" : "";
                lines.Add($"{row.Row}: {Signed(diff)} points, {verdict} (95% interval, {pairs} seeds){inRange}.");
            }
        }
        // The control's question is whether choosing by magnitude matters: compare it with the top-k row that
        // keeps as many entries on the same kind of gradient (same k and decay), seed by seed.
        foreach (var control in table.Where(r => r.Selection == "random" && r.Seeds.Count > 0))
        {
            var byMagnitude = table.FirstOrDefault(r => r.Selection == "per-channel" && r.TopK == control.TopK && r.Decay == control.Decay);
            if (byMagnitude is null) continue;
            var (diff, halfWidth, pairs) = PairedTest(control, byMagnitude);
            if (pairs < 2) continue;
            string verdict = diff + halfWidth < 0 ? "choosing by magnitude matters, not only the amount kept"
                : diff - halfWidth > 0 ? "random choice does better than choosing by magnitude"
                : "no difference the seeds can resolve (the interval holds zero)";
            lines.Add($"Control: {control.Row} − {byMagnitude.Row} (the same k per feature map, chosen at random rather than by magnitude): " +
                      $"{Signed(diff)} [{Signed(diff - halfWidth)}, {Signed(diff + halfWidth)}] points (95%, {pairs} seeds); {verdict}.");
        }
        return string.Join("\n", lines.Select(l => "- " + l));
    }

    /// <summary>Where a mean test accuracy falls against the paper's range, both as fractions, compared at the reported 0.01%.</summary>
    internal static string RangePosition(double mean, double[] range)
    {
        double rounded = Math.Round(100 * mean, 2);
        return rounded < Math.Round(100 * range[0], 2) ? "below" : rounded > Math.Round(100 * range[1], 2) ? "above" : "within";
    }

    private static string Shares(Dictionary<string, double[]> values, string layer) =>
        values.TryGetValue(layer, out var pair) ? $"{F(100 * pair[0], 1)}% → {F(100 * pair[1], 1)}%" : "";

    private static string F(double value, int digits) => value.ToString("F" + digits, CultureInfo.InvariantCulture);
    private static string Signed(double value) => (value >= 0 ? "+" : "") + F(value, 2);
}
