using System.Globalization;
using System.Text.Json.Serialization;

namespace MeProp.Training;

/// <summary>How the meProp ratio moves over the run's epochs (<see cref="TopKSchedule"/>).</summary>
public enum ScheduleShape
{
    /// <summary>Each meProp layer keeps its own ratio (`--topk`) in every sparse epoch.</summary>
    Constant,
    /// <summary>From the start ratio at epoch 1 to the end ratio at the last epoch, in equal steps.</summary>
    Linear,
    /// <summary>From the start ratio to the end ratio along half a cosine: end + (start - end)·(1 + cos(π·t))/2.</summary>
    Cosine,
}

/// <summary>
/// The meProp ratio as a function of the epoch (ssProp's schedules): constant, linear or cosine between two
/// ratios over the run, with dense epochs (ratio 1, which gives exactly the dense gradients) for a warm-up
/// and every N-th epoch. Progress is t = (epoch - 1)/(epochs - 1) over the configured epochs (t = 0 for a
/// one-epoch run), so the ratio in force derives from the epoch number alone and a resumed run follows it
/// exactly (extending a resumed run with --epochs stretches what remains of a linear or cosine schedule).
/// A linear or cosine ratio applies to every meProp layer, replacing per-layer ratios; the constant shape
/// leaves each layer its own. Stored in the configuration (<see cref="TrainOptions.TopKSchedule"/>).
/// </summary>
public sealed record TopKSchedule
{
    public ScheduleShape Shape { get; init; }
    /// <summary>Linear and cosine: the ratio at the first epoch, in (0, 1]; null for constant.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? StartRatio { get; init; }
    /// <summary>Linear and cosine: the ratio at the last epoch, in (0, 1]; null for constant.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? EndRatio { get; init; }
    /// <summary>The first N epochs train dense (ratio 1).</summary>
    public int DenseWarmup { get; init; }
    /// <summary>Every N-th epoch (epoch % N == 0) trains dense; 0 for none.</summary>
    public int DenseEvery { get; init; }

    /// <summary>
    /// The ratio every meProp layer takes at <paramref name="epoch"/> (1-based) of <paramref name="epochs"/>:
    /// 1 in a dense epoch, the shape's ratio for linear and cosine, null for constant (each layer's own).
    /// </summary>
    public double? RatioAt(int epoch, int epochs)
    {
        if (IsDense(epoch)) return 1.0;
        if (Shape == ScheduleShape.Constant) return null;
        double start = StartRatio ?? 1, end = EndRatio ?? 1;
        double t = epochs <= 1 ? 0 : Math.Clamp((epoch - 1) / (double)(epochs - 1), 0, 1);
        return Shape == ScheduleShape.Linear
            ? start + (end - start) * t
            : end + (start - end) * (1 + Math.Cos(Math.PI * t)) / 2;
    }

    /// <summary>Whether <paramref name="epoch"/> (1-based) is a dense one: of the warm-up, or a multiple of <see cref="DenseEvery"/>.</summary>
    public bool IsDense(int epoch) => epoch <= DenseWarmup || (DenseEvery > 0 && epoch % DenseEvery == 0);

    /// <summary>Throws an ArgumentException naming the bad value.</summary>
    public void Validate()
    {
        if (DenseWarmup < 0) throw new ArgumentException($"the dense warm-up must be >= 0 epochs, got {DenseWarmup}");
        if (DenseEvery < 0) throw new ArgumentException($"dense-every must be >= 0, got {DenseEvery}");
        if (Shape == ScheduleShape.Constant)
        {
            if (StartRatio is not null || EndRatio is not null) throw new ArgumentException("a constant top-k schedule takes no ratios (the layers keep --topk's)");
            return;
        }
        foreach (var ratio in new[] { StartRatio, EndRatio })
            if (ratio is not double r || !(r > 0 && r <= 1))
                throw new ArgumentException($"a {Shape.ToString().ToLowerInvariant()} top-k schedule needs a start and an end ratio in (0, 1], got {StartRatio?.ToString(CultureInfo.InvariantCulture) ?? "none"} and {EndRatio?.ToString(CultureInfo.InvariantCulture) ?? "none"}");
    }

    /// <summary>Parses `constant`, `linear:START:END` or `cosine:START:END` (ratios in (0, 1]); dense epochs are given apart.</summary>
    public static TopKSchedule Parse(string text)
    {
        var parts = text.Split(':', StringSplitOptions.TrimEntries);
        var shape = parts[0].ToLowerInvariant() switch
        {
            "constant" => ScheduleShape.Constant,
            "linear" => ScheduleShape.Linear,
            "cosine" => ScheduleShape.Cosine,
            _ => throw new ArgumentException($"top-k schedule '{text}': the shape must be constant, linear or cosine"),
        };
        int expected = shape == ScheduleShape.Constant ? 1 : 3;
        if (parts.Length != expected)
            throw new ArgumentException($"top-k schedule '{text}': write {(expected == 1 ? "constant" : parts[0] + ":START:END")}");
        double? Ratio(string part) => double.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out var r) ? r
            : throw new ArgumentException($"top-k schedule '{text}': '{part}' is not a number");
        var schedule = expected == 1 ? new TopKSchedule() : new TopKSchedule { Shape = shape, StartRatio = Ratio(parts[1]), EndRatio = Ratio(parts[2]) };
        schedule.Validate();
        return schedule;
    }
}
