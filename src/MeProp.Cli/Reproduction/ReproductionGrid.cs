using MeProp.Layers;
using System.Globalization;
using MeProp.Models;
using MeProp.Sparsity;
using MeProp.Training;

namespace MeProp.Cli.Reproduction;

/// <summary>
/// The paper's figures for one row, as far as they are known here: the best dev epoch, its dev and test
/// accuracy (fractions). Where the paper's text gives only a range over its meProp rows, <see cref="Epoch"/>
/// and <see cref="Dev"/> are null and <see cref="TestRange"/> holds the range.
/// </summary>
internal sealed record PaperRow(int? Epoch, double? Dev, double? Test, double[]? TestRange = null);

/// <summary>
/// One configuration of the meProp-CNN paper's MNIST grid: Table 2 is the paper's CNN without batch norm,
/// Table 3 with it; a row is dense (TopK null), top-k per feature map of conv1 and conv2 with a decay, or
/// the random-k control (same k per feature map, uniform positions, decay 0).
/// </summary>
internal sealed record ReproductionConfig(int Table, double? TopK, double? Decay, SelectionPolicy? Selection)
{
    public bool BatchNorm => Table == 3;

    /// <summary>Row name without the table: dense, top5-d0, top5-d0.6, random5.</summary>
    public string Row => TopK is not double k ? "dense"
        : Selection == SelectionPolicy.Random ? $"random{Percent(k)}"
        : $"top{Percent(k)}-d{Decay!.Value.ToString("0.##", CultureInfo.InvariantCulture)}";

    /// <summary>Directory name of the configuration, e.g. table2-top5-d0.6.</summary>
    public string Name => $"table{Table}-{Row}";

    /// <summary>The two rows per table that get extra seeds: the dense baseline and top-k 5% with decay 0.6.</summary>
    public bool IsHeadline => TopK is null || (TopK == 0.05 && Decay == 0.6 && Selection == SelectionPolicy.PerChannel);

    public PaperRow? Paper => ReproductionGrid.PaperFigures(this);

    public TrainOptions Options(ulong seed, int epochs, int threads, int devSize, int? maxTrain) => new()
    {
        ModelOptions = new ModelOptions { Model = "paper-cnn", BatchNorm = BatchNorm },
        Epochs = epochs,
        Seed = seed,
        Threads = threads,
        DevSize = devSize,
        MaxTrain = maxTrain,
        TopK = TopK,
        Decay = Decay ?? 0,
        Selection = TopK is null ? null : Selection,
        // The grid's runs resume across builds over days: all keep the plain dense products where meProp
        // does not select (the paper's arithmetic), so none mixes two summation orders.
        ExactSparsity = ExactSparsity.Off,
    };

    private static string Percent(double ratio) => (ratio * 100).ToString("0.##", CultureInfo.InvariantCulture);
}

/// <summary>The configurations of Tables 2 and 3 and the paper's published figures.</summary>
internal static class ReproductionGrid
{
    public static readonly double[] Ratios = [0.05, 0.08, 0.1];
    public static readonly double[] Decays = [0, 0.6];

    /// <summary>Per table: dense, top-k (5, 8, 10%) x decay (0, 0.6), then the random-k 5% control.</summary>
    public static IReadOnlyList<ReproductionConfig> All { get; } = Build();

    private static List<ReproductionConfig> Build()
    {
        var configs = new List<ReproductionConfig>();
        foreach (int table in new[] { 2, 3 })
        {
            configs.Add(new ReproductionConfig(table, null, null, null));
            foreach (double ratio in Ratios)
                foreach (double decay in Decays)
                    configs.Add(new ReproductionConfig(table, ratio, decay, SelectionPolicy.PerChannel));
            configs.Add(new ReproductionConfig(table, 0.05, 0, SelectionPolicy.Random));
        }
        return configs;
    }

    /// <summary>
    /// The paper's figures for a configuration: its dense test accuracies (99.02% without batch norm, 99.28%
    /// with), and for the meProp rows the range its text reports over top-k 5-10% (99.07-99.27%,
    /// 99.14-99.48% with batch norm). Per-row epochs and dev accuracies are null: the paper's tables were
    /// not at hand when this was written. The random-k control is not in the paper.
    /// </summary>
    public static PaperRow? PaperFigures(ReproductionConfig config) => config switch
    {
        { Selection: SelectionPolicy.Random } => null,
        { TopK: null, Table: 2 } => new PaperRow(null, null, 0.9902),
        { TopK: null, Table: 3 } => new PaperRow(null, null, 0.9928),
        { Table: 2 } => new PaperRow(null, null, null, [0.9907, 0.9927]),
        _ => new PaperRow(null, null, null, [0.9914, 0.9948]),
    };
}
