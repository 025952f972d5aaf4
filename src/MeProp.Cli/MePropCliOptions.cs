using System.CommandLine;
using MeProp.Models;
using MeProp.Sparsity;
using MeProp.Training;

namespace MeProp.Cli;

/// <summary>The meProp options shared by train, stats and bench.</summary>
internal sealed class MePropCliOptions
{
    private static readonly string[] SelectionNames = Enum.GetValues<SelectionPolicy>().Select(MePropSetup.Cli).ToArray();

    public readonly Option<double?> TopK = new("--topk")
    {
        Description = "meProp: keep this fraction of dL/dy entries per pool, in (0, 1]; absent trains dense",
    };

    public readonly Option<double> Decay = new("--decay")
    {
        Description = "Select on the running average run = decay*run + (1-decay)*|dL/dy| (paper: 0.6); 0 selects on the current gradient",
    };

    public readonly Option<string> DecayShape = new("--decay-shape")
    {
        Description = "Running gradient shape: full (as dL/dy, the paper's reading) or channel-position (averaged over the batch)",
        DefaultValueFactory = _ => "full",
    };

    public readonly Option<string?> Selection = new("--selection")
    {
        Description = "per-channel | per-example-channel (conv layers), per-example | unified (linear layers), random (both). Default: per-channel for conv, per-example for linear",
    };

    public readonly Option<string?> Layers = new("--meprop-layers")
    {
        Description = "Comma-separated layers to sparsify (default: the conv layers, as the paper; fc1 may be added; never the output layer)",
    };

    public MePropCliOptions()
    {
        TopK.Require(v => v is null or (> 0 and <= 1), "--topk must be in (0, 1]");
        Decay.Require(v => v >= 0 && v < 1, "--decay must be in [0, 1)");
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
        command.Options.Add(Layers);
    }

    public TrainOptions Apply(ParseResult parse, TrainOptions options)
    {
        if (parse.GetValue(TopK) is null && (parse.GetValue(Decay) != 0 || parse.GetValue(Selection) is not null || parse.GetValue(Layers) is not null))
            throw new ArgumentException("--decay, --selection and --meprop-layers need --topk (without it training is dense)");
        return WithMeProp(parse, options);
    }

    private TrainOptions WithMeProp(ParseResult parse, TrainOptions options) => options with
    {
        TopK = parse.GetValue(TopK),
        Decay = parse.GetValue(Decay),
        DecayShape = parse.GetValue(DecayShape) == "channel-position" ? Sparsity.DecayShape.ChannelPosition : Sparsity.DecayShape.Full,
        Selection = parse.GetValue(Selection) is string s ? Enum.GetValues<SelectionPolicy>().First(p => MePropSetup.Cli(p) == s) : null,
        MePropLayers = parse.GetValue(Layers)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
    };
}
