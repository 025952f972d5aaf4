using MeProp.Layers;
using MeProp.Sparsity;

namespace MeProp.Models;

/// <summary>Attaches meProp sparsifiers to the chosen layers of a model.</summary>
public static class MePropSetup
{
    /// <summary>
    /// Gives each named layer (default: every convolution) a <see cref="GradientSparsifier"/>. The output
    /// layer is never sparsified: its gradient is the loss gradient itself, and meProp leaves it whole.
    /// </summary>
    public static void Attach(Sequential model, double ratio, double decay, DecayShape shape, SelectionPolicy? selection,
        IReadOnlyList<string>? layerNames, ulong seed)
    {
        var names = layerNames ?? model.AllLayers.OfType<Conv2d>().Select(l => l.Name).ToArray();
        var output = model.AllLayers.OfType<IMePropLayer>().LastOrDefault();
        var layers = new List<IMePropLayer>();
        foreach (string name in names)
        {
            var layer = model.Layer(name) as IMePropLayer
                ?? throw new ArgumentException($"meProp layer '{name}' is not a conv or linear layer");
            if (ReferenceEquals(layer, output)) throw new ArgumentException($"meProp layer '{name}' is the output layer, which meProp never sparsifies");
            layers.Add(layer);
        }
        if (selection is SelectionPolicy s && !layers.Any(l => Fits(s, l is Conv2d)))
            throw new ArgumentException($"selection {Cli(s)} applies to none of the meProp layers ({string.Join(", ", names)})");
        ulong stream = 0;
        foreach (var layer in layers)
        {
            bool conv = layer is Conv2d;
            var policy = selection is SelectionPolicy chosen && Fits(chosen, conv) ? chosen
                : conv ? SelectionPolicy.PerChannel : SelectionPolicy.PerExample;
            var options = new MePropOptions { Ratio = ratio, Decay = decay, DecayShape = shape, Selection = policy };
            layer.Sparsifier = new GradientSparsifier(layer.Name, options, conv, seed + 7919 * ++stream);
        }
    }

    private static bool Fits(SelectionPolicy policy, bool convolutional) => policy switch
    {
        SelectionPolicy.Random => true,
        SelectionPolicy.PerChannel or SelectionPolicy.PerExampleChannel => convolutional,
        _ => !convolutional,
    };

    /// <summary>The command-line spelling of a policy ("per-example-channel").</summary>
    public static string Cli(SelectionPolicy policy) => System.Text.Json.JsonNamingPolicy.KebabCaseLower.ConvertName(policy.ToString());
}
