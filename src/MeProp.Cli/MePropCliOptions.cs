using System.CommandLine;
using MeProp.Models;
using MeProp.Sparsity;
using MeProp.Training;

namespace MeProp.Cli;

/// <summary>The meProp options shared by train, stats and bench.</summary>
internal sealed class MePropCliOptions
{
    private static readonly string[] SelectionNames = Enum.GetValues<SelectionPolicy>().Select(MePropSetup.Cli).ToArray();

    public readonly Option<TopKRatios?> TopK = new("--topk")
    {
        Description = "meProp: keep this fraction of dL/dy entries per pool, in (0, 1]; per layer as conv1=0.1,conv2=0.05 "
            + "(the layers named are the meProp layers), or 0.05,conv2=0.1 (conv2's ratio, 0.05 for the other meProp layers); absent trains dense",
        CustomParser = result => TopKRatios.Parse(result, string.Join(",", result.Tokens.Select(t => t.Value))),
    };

    public readonly Option<double> Decay = new("--decay")
    {
        Description = "Select on the running average run = decay*run + (1-decay)*|dL/dy| (paper: 0.6); 0 selects on the current gradient",
    };

    public readonly Option<string> DecayShape = new("--decay-shape")
    {
        Description = "Running gradient shape: full (as dL/dy, the paper's reading) or channel-position (averaged over the batch); needs --decay above 0",
        DefaultValueFactory = _ => "full",
    };

    public readonly Option<string?> Selection = new("--selection")
    {
        Description = "per-channel | per-example-channel | channel (conv layers; channel keeps whole output channels by mean |dL/dy|, ssProp's), per-example | unified (linear layers), random (both). Default: per-channel for conv, per-example for linear",
    };

    public readonly Option<double?> MassFraction = new("--topk-mass")
    {
        Description = "Adaptive k (TinyProp's idea): each pool keeps the fewest of its top-k entries, largest |dL/dy| first, that hold this fraction of the pool's |dL/dy| mass; --topk becomes the most kept. Per-channel and per-example selection",
    };

    public readonly Option<bool> ZeroMean = new("--topk-zero-mean")
    {
        Description = "Shift each unit's kept dL/dy values (an output channel's over the batch) to mean zero, as batch norm's exact gradient has them: for layers that batch norm follows",
    };

    public readonly Option<string?> Layers = new("--meprop-layers")
    {
        Description = "Comma-separated layers to sparsify (default: the conv layers but the output layer, as the paper; in a network without conv layers, the linear layers but the output layer; never the output layer)",
    };

    public MePropCliOptions()
    {
        Decay.Require(v => v >= 0 && v < 1, "--decay must be in [0, 1)");
        MassFraction.Require(v => v is null || (v > 0 && v <= 1), "--topk-mass must be in (0, 1]");
        Layers.Require(v => v is null || v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Length > 0, "--meprop-layers names no layer");
        DecayShape.AcceptOnlyFromAmong("full", "channel-position");
        Selection.AcceptOnlyFromAmong(SelectionNames);
    }

    public void AddTo(Command command)
    {
        command.Options.Add(TopK);
        command.Options.Add(Decay);
        command.Options.Add(DecayShape);
        command.Options.Add(Selection);
        command.Options.Add(MassFraction);
        command.Options.Add(ZeroMean);
        command.Options.Add(Layers);
    }

    /// <summary>A configuration's --topk as given on the command line ("0.05", "conv1=0.1,conv2=0.05"); null when dense.</summary>
    public static string[]? TopKText(TrainOptions options) => new TopKRatios(options.TopK, options.LayerRatios).Text();

    /// <summary>
    /// The options with the meProp ones given. When <paramref name="resuming"/>, meProp options may come
    /// without --topk: they are only compared with the resumed run's.
    /// </summary>
    public TrainOptions Apply(ParseResult parse, TrainOptions options, bool resuming = false)
    {
        if (!resuming && parse.GetValue(TopK) is null && (parse.GetValue(Decay) != 0 || parse.GetValue(Selection) is not null || parse.GetValue(Layers) is not null || parse.GetValue(MassFraction) is not null || parse.GetValue(ZeroMean)))
            throw new ArgumentException("--decay, --selection, --topk-mass, --topk-zero-mean and --meprop-layers need --topk (without it training is dense)");
        if (!resuming && parse.GetValue(DecayShape) != "full" && parse.GetValue(Decay) == 0)
            throw new ArgumentException("--decay-shape is the shape of the running average: it needs --decay above 0");
        return WithMeProp(parse, options);
    }

    private TrainOptions WithMeProp(ParseResult parse, TrainOptions options) => options with
    {
        TopK = parse.GetValue(TopK)?.Ratio,
        LayerRatios = parse.GetValue(TopK)?.Layers,
        Decay = parse.GetValue(Decay),
        DecayShape = parse.GetValue(DecayShape) == "channel-position" ? Sparsity.DecayShape.ChannelPosition : Sparsity.DecayShape.Full,
        Selection = parse.GetValue(Selection) is string s ? Enum.GetValues<SelectionPolicy>().First(p => MePropSetup.Cli(p) == s) : null,
        MePropLayers = parse.GetValue(Layers)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
        MassFraction = parse.GetValue(MassFraction),
        ZeroMean = parse.GetValue(ZeroMean),
    };
}

/// <summary>--topk's value: a ratio for every meProp layer, ratios per layer name, or both (the named ones override).</summary>
internal sealed record TopKRatios(double? Ratio, Dictionary<string, double>? Layers)
{
    public static TopKRatios? Parse(System.CommandLine.Parsing.ArgumentResult result, string text)
    {
        double? ratio = null;
        var layers = new Dictionary<string, double>();
        bool failed = false;
        void Fail(string message)
        {
            failed = true;
            result.AddError(message);
        }
        foreach (string part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            int equals = part.IndexOf('=');
            string? layer = equals < 0 ? null : part[..equals].Trim();
            string number = equals < 0 ? part : part[(equals + 1)..].Trim();
            string whose = layer is null ? "" : $" of layer '{layer}'";
            if (layer is "") { Fail($"--topk: '{part}' names no layer"); continue; }
            if (!double.TryParse(number, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double value) || !(value > 0 && value <= 1))
            {
                Fail($"--topk: the ratio{whose} must be in (0, 1], got '{number}'");
                continue;
            }
            if (layer is null)
            {
                if (ratio is not null) Fail("--topk: give one ratio for every layer, and name=ratio for the others");
                ratio = value;
            }
            else if (!layers.TryAdd(layer, value)) Fail($"--topk: layer '{layer}' is given twice");
        }
        if (ratio is null && layers.Count == 0 && !failed) result.AddError("--topk: no ratio given");
        return new TopKRatios(ratio, layers.Count > 0 ? layers : null);
    }

    /// <summary>The value as written on the command line (ratio first, then name=ratio); null when there is none.</summary>
    public string[]? Text()
    {
        var parts = new List<string>();
        if (Ratio is double r) parts.Add(r.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (Layers is not null) parts.AddRange(Layers.Select(p => $"{p.Key}={p.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)}"));
        return parts.Count == 0 ? null : parts.ToArray();
    }
}
