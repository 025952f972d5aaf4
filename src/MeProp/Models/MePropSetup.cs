using MeProp.Layers;
using MeProp.Sparsity;

namespace MeProp.Models;

/// <summary>Attaches meProp sparsifiers to the chosen layers of a model.</summary>
public static class MePropSetup
{
    /// <summary>
    /// Gives each named layer (default: <see cref="DefaultLayers(Sequential)"/>) a <see cref="GradientSparsifier"/>.
    /// The output layer is never sparsified: its gradient is the loss gradient itself, and meProp leaves it
    /// whole (naming it is an error). Everything is checked before any layer is changed, so a refused
    /// call leaves the model as it was.
    /// </summary>
    public static void Attach(Sequential model, double ratio, double decay, DecayShape shape, SelectionPolicy? selection,
        IReadOnlyList<string>? layerNames, ulong seed) =>
        Attach(model, ratio, null, decay, shape, selection, layerNames, seed);

    /// <summary>
    /// As the overload above, with a ratio per layer: <paramref name="layerRatios"/> (layer name to ratio)
    /// overrides <paramref name="ratio"/> for the layers it names, which must be among the meProp layers.
    /// Without <paramref name="ratio"/> the meProp layers are <paramref name="layerNames"/>, each of which
    /// must then have a ratio, or else the layers named in <paramref name="layerRatios"/> (in model order).
    /// </summary>
    public static void Attach(Sequential model, double? ratio, IReadOnlyDictionary<string, double>? layerRatios, double decay, DecayShape shape,
        SelectionPolicy? selection, IReadOnlyList<string>? layerNames, ulong seed) =>
        Attach(model, ratio, layerRatios, decay, shape, selection, layerNames, seed, massFraction: null);

    /// <summary>
    /// As the overload above, with an adaptive k on every meProp layer (<see cref="MePropOptions.MassFraction"/>) when
    /// <paramref name="massFraction"/> is given, and the kept values of each unit shifted to mean zero
    /// (<see cref="MePropOptions.ZeroMean"/>) when <paramref name="zeroMean"/>.
    /// </summary>
    public static void Attach(Sequential model, double? ratio, IReadOnlyDictionary<string, double>? layerRatios, double decay, DecayShape shape,
        SelectionPolicy? selection, IReadOnlyList<string>? layerNames, ulong seed, double? massFraction, bool zeroMean = false)
    {
        if (ratio is null && layerRatios is not { Count: > 0 }) throw new ArgumentException("meProp needs a ratio, for every meProp layer or per layer");
        var output = model.AllLayers.OfType<IMePropLayer>().LastOrDefault();
        IReadOnlyList<string> names;
        if (layerNames is not null) names = layerNames;
        else if (ratio is null)
        {
            // Every named layer must exist (Layer throws naming it); the meProp layers are then taken in model order.
            foreach (string name in layerRatios!.Keys) model.Layer(name);
            names = model.AllLayers.Select(l => l.Name).Where(layerRatios.ContainsKey).ToArray();
        }
        else names = DefaultLayers(model, output);
        if (names.Count == 0)
            throw new ArgumentException(layerNames is not null ? "meProp layers: the list names no layer"
                : "meProp has no layer to sparsify: the model has no conv or linear layer but its output layer");
        if (layerRatios is not null)
            foreach (string name in layerRatios.Keys)
                if (!names.Contains(name))
                    throw new ArgumentException($"layer '{name}' has a top-k ratio but is not a meProp layer (the meProp layers: {string.Join(", ", names)})");
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
        var sparsifiers = new GradientSparsifier[layers.Count];
        ulong stream = 0;
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            bool conv = layer is Conv2d;
            var policy = selection is SelectionPolicy chosen && Fits(chosen, conv) ? chosen
                : conv ? SelectionPolicy.PerChannel : SelectionPolicy.PerExample;
            double layerRatio = layerRatios is not null && layerRatios.TryGetValue(layer.Name, out double r) ? r
                : ratio ?? throw new ArgumentException($"meProp layer '{layer.Name}' has no top-k ratio (give it one, or a ratio for every layer)");
            var options = new MePropOptions { Ratio = layerRatio, Decay = decay, DecayShape = shape, Selection = policy, MassFraction = massFraction, ZeroMean = zeroMean };
            sparsifiers[i] = new GradientSparsifier(layer.Name, options, conv, seed + 7919 * ++stream);
        }
        for (int i = 0; i < layers.Count; i++) layers[i].Sparsifier = sparsifiers[i];
    }

    /// <summary>
    /// The layers meProp sparsifies when none are named: every convolution but the output layer (the
    /// meProp-CNN setting), or, in a network without one, every linear layer but the output layer (the
    /// original meProp's MLP setting).
    /// </summary>
    public static string[] DefaultLayers(Sequential model) => DefaultLayers(model, model.AllLayers.OfType<IMePropLayer>().LastOrDefault());

    private static string[] DefaultLayers(Sequential model, IMePropLayer? output)
    {
        var candidates = model.AllLayers.OfType<IMePropLayer>().Where(l => !ReferenceEquals(l, output)).ToArray();
        var convolutions = candidates.Where(l => l is Conv2d).ToArray();
        return (convolutions.Length > 0 ? convolutions : candidates).Select(l => l.Name).ToArray();
    }

    private static bool Fits(SelectionPolicy policy, bool convolutional) => policy switch
    {
        SelectionPolicy.Random => true,
        SelectionPolicy.PerChannel or SelectionPolicy.PerExampleChannel or SelectionPolicy.Channel => convolutional,
        _ => !convolutional,
    };

    /// <summary>The command-line spelling of a policy ("per-example-channel").</summary>
    public static string Cli(SelectionPolicy policy) => System.Text.Json.JsonNamingPolicy.KebabCaseLower.ConvertName(policy.ToString());
}
