using System.Text.Json;
using MeProp.Training;

namespace MeProp.Cli.Reproduction;

/// <summary>
/// What a run directory's metrics.jsonl says under the paper's protocol: the best epoch is the first one
/// with the highest dev accuracy, or without a dev split the last one (as <see cref="Trainer"/> picks it);
/// its test accuracy is the result.
/// </summary>
internal sealed record RunRecord(IReadOnlyList<EpochMetrics> Epochs)
{
    public int EpochsCompleted => Epochs.Count;

    public EpochMetrics Best
    {
        get
        {
            var best = Epochs[0];
            foreach (var epoch in Epochs.Skip(1))
                if (epoch.DevAccuracy is not double dev || best.DevAccuracy is not double bestDev || dev > bestDev) best = epoch;
            return best;
        }
    }

    public EpochMetrics Last => Epochs[^1];

    /// <summary>The first <paramref name="epochs"/> epochs (a run trained further is read as if it had stopped there).</summary>
    public RunRecord Truncated(int epochs) => Epochs.Count <= epochs ? this : new RunRecord(Epochs.Take(epochs).ToList());

    /// <summary>Reads DIRECTORY/metrics.jsonl; no file gives a record with no epochs.</summary>
    public static RunRecord Read(string directory)
    {
        string path = Path.Combine(directory, Trainer.MetricsFile);
        if (!File.Exists(path)) return new RunRecord([]);
        var epochs = new List<EpochMetrics>();
        int number = 0;
        foreach (string line in File.ReadLines(path))
        {
            number++;
            if (line.Length == 0) continue;
            try { epochs.Add(JsonSerializer.Deserialize<EpochMetrics>(line, Json.Line) ?? throw new JsonException("null record")); }
            catch (JsonException e) { throw new InvalidDataException($"{path}: line {number} is not a metrics record ({e.Message})"); }
            if (epochs[^1].Epoch != epochs.Count)
                throw new InvalidDataException($"{path}: line {number} is epoch {epochs[^1].Epoch}, expected epoch {epochs.Count}");
        }
        return new RunRecord(epochs);
    }
}
