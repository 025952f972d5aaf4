using MeProp.Cli.Reproduction;
using MeProp.Training;

namespace MeProp.Cli.Plotting;

/// <summary>How a metric's values sit on the y-axis.</summary>
internal enum ValueScale
{
    /// <summary>Percent, from a little below the lowest value after the first epoch (bands included) up to 100.</summary>
    Percent,
    /// <summary>Logarithmic, whole decades.</summary>
    Logarithmic,
}

/// <summary>A per-epoch quantity of metrics.jsonl that gets a chart: its file name, title, axis label and value.</summary>
internal sealed record Metric(string Name, string Title, string AxisLabel, ValueScale Scale, Func<EpochMetrics, double?> Value)
{
    /// <summary>Null for epochs of a run without a dev split.</summary>
    public static readonly Metric DevAccuracy = new("dev-accuracy", "Dev accuracy", "dev accuracy (%)", ValueScale.Percent, e => 100 * e.DevAccuracy);

    /// <summary>A log axis has no place for 0 or for the NaN of a diverged epoch, so those epochs get no point.</summary>
    public static readonly Metric TrainLoss = new("train-loss", "Training loss", "training loss (log scale)", ValueScale.Logarithmic,
        e => e.TrainLoss > 0 && double.IsFinite(e.TrainLoss) ? e.TrainLoss : null);

    public static readonly IReadOnlyList<Metric> All = [DevAccuracy, TrainLoss];
}

/// <summary>
/// One line of a chart: per epoch the mean of a metric over the runs (seeds) that have a value there, and
/// the band from their lowest to their highest value. Arrays have one entry per point, epochs ascending;
/// epochs that no run has a value for are absent.
/// </summary>
internal sealed record Curve(string Label, int Runs, double[] Epochs, double[] Mean, double[] Low, double[] High)
{
    /// <summary>
    /// Summarises <paramref name="runs"/> epoch by epoch. Runs still in progress have fewer epochs than the
    /// others, so each epoch averages over the runs that have completed it.
    /// </summary>
    public static Curve Summarise(string label, IReadOnlyList<RunRecord> runs, Metric metric)
    {
        var (epochs, mean, low, high) = (new List<double>(), new List<double>(), new List<double>(), new List<double>());
        int lastEpoch = runs.Count == 0 ? 0 : runs.Max(r => r.EpochsCompleted);
        for (int epoch = 1; epoch <= lastEpoch; epoch++)
        {
            var values = runs.Where(r => r.EpochsCompleted >= epoch)
                .Select(r => metric.Value(r.Epochs[epoch - 1]))
                .OfType<double>()
                .ToList();
            if (values.Count == 0) continue;
            epochs.Add(epoch);
            mean.Add(values.Average());
            low.Add(values.Min());
            high.Add(values.Max());
        }
        return new Curve(label, runs.Count, [.. epochs], [.. mean], [.. low], [.. high]);
    }
}
