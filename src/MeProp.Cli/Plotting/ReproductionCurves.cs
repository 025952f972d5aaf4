using MeProp.Cli.Reproduction;

namespace MeProp.Cli.Plotting;

/// <summary>
/// The training curves of a reproduction: per table, one chart per metric (tableN-dev-accuracy.png/.svg,
/// tableN-train-loss.png/.svg) with a line per configuration, the mean over its seeds, and a band from
/// the lowest to the highest seed.
/// </summary>
internal static class ReproductionCurves
{
    /// <summary>
    /// Writes the charts into <paramref name="resultsRoot"/> from the runs under <paramref name="runsRoot"/>.
    /// <paramref name="rows"/> is what <see cref="ReproductionReport.Collect"/> made of <paramref name="configs"/>,
    /// one row per configuration in the same order; it says which seeds have metrics. A table without any
    /// run gets no charts.
    /// </summary>
    public static void Write(string resultsRoot, string runsRoot, IReadOnlyList<ReproductionConfig> configs, IReadOnlyList<ReproductionRow> rows)
    {
        foreach (var table in configs.Zip(rows).GroupBy(pair => pair.First.Table))
        {
            if (table.All(pair => pair.Second.Seeds.Count == 0)) continue;
            // A configuration without runs stays in the list with an empty curve: it is left out of the
            // charts, and the others keep the colours they have in the other table.
            var runs = table.Select(pair => (Config: pair.First, Seeds: pair.Second.Seeds
                    .Select(seed => RunRecord.Read(Path.Combine(runsRoot, new ReproductionRun(pair.First, seed).RelativePath)).Truncated(pair.Second.Epochs))
                    .ToList()))
                .ToList();
            string batchNorm = table.Key == 3 ? "with" : "without";
            foreach (var metric in Metric.All)
            {
                var curves = runs.Select(r => Curve.Summarise($"{r.Config.Row} ({SeedsText(r.Seeds)})", r.Seeds, metric)).ToList();
                string title = $"Table {table.Key}, {batchNorm} batch norm: {metric.Title.ToLowerInvariant()}, mean over seeds (band: min to max)";
                TrainingCurves.Write(metric, curves, title, Path.Combine(resultsRoot, $"table{table.Key}-{metric.Name}"));
            }
        }
    }

    /// <summary>
    /// "3 seeds", or where some runs are shorter, how many the mean holds past the shortest ("2 seeds, 1 past
    /// epoch 9"): each epoch's mean is over the runs that reached it.
    /// </summary>
    internal static string SeedsText(IReadOnlyList<RunRecord> runs)
    {
        string text = $"{runs.Count} {(runs.Count == 1 ? "seed" : "seeds")}";
        if (runs.Count < 2) return text;
        int shortest = runs.Min(r => r.EpochsCompleted);
        int longer = runs.Count(r => r.EpochsCompleted > shortest);
        return longer == 0 ? text : $"{text}, {longer} past epoch {shortest}";
    }
}
