using System.Text.Json;
using MeProp.Layers;
using MeProp.Sparsity;
using MeProp.Tensors;

namespace MeProp.Models;

/// <summary>
/// Turns a <see cref="NetworkSpec"/> into layers, inferring each layer's input size from the one before
/// (a conv's in_channels, a linear's in_features) and checking every shape on the way, so a network that
/// does not fit fails here with the layer's name and the shapes, not in the first batch. Initial weights
/// come from one seeded stream consumed in layer order; dropout layers get streams of their own.
/// </summary>
public static class NetworkFactory
{
    private const ulong InitStream = 1, DropoutStreamBase = 0x6472_6F70;

    public static Sequential Build(NetworkSpec spec, ComputeContext compute, ulong seed)
    {
        CheckInputClassesAndLayers(spec, "");
        var context = new BuildContext(compute, Rng.ForStream(seed, InitStream), seed);
        var shape = spec.Input;
        var layers = BuildLayers(spec.Layers, "", ref shape, context);
        if (shape.Length != 1 || shape[0] != spec.Classes)
            throw new ModelSpecException($"the network ends in [{string.Join(", ", shape)}] per example, but classes is {spec.Classes}: the last layer should be a linear layer with out_features {spec.Classes}");
        var model = new Sequential(layers) { Spec = spec };
        AttachMeProp(model, context.MeProp, seed);
        return model;
    }

    /// <summary>
    /// Checks the spec's input shape, classes and layer list, which a file may also give as null, before
    /// anything reads them; <paramref name="where"/> ("net.json: " or "") starts the error.
    /// </summary>
    internal static void CheckInputClassesAndLayers(NetworkSpec spec, string where)
    {
        if (spec.Input is null) throw new ModelSpecException($"{where}input is missing; it must be [C, H, W] or [features]");
        if (spec.Input is not { Length: 1 or 3 } || spec.Input.Any(d => d < 1))
            throw new ModelSpecException($"{where}input must be [C, H, W] or [features] with positive sizes, got [{string.Join(", ", spec.Input)}]");
        if (spec.Classes < 1) throw new ModelSpecException($"{where}classes must be positive, got {spec.Classes}");
        if (spec.Layers is not { Count: > 0 }) throw new ModelSpecException($"{where}the network has no layers");
    }

    /// <summary>
    /// Gives the layers whose spec has "meprop" their sparsifiers, seeded as <see cref="MePropSetup"/>
    /// seeds its layers (one stream per meProp layer, in layer order). The output layer is refused.
    /// </summary>
    private static void AttachMeProp(Sequential model, List<(IMePropLayer Layer, LayerMePropSpec Spec)> layers, ulong seed)
    {
        var output = model.AllLayers.OfType<IMePropLayer>().LastOrDefault();
        ulong stream = 0;
        foreach (var (layer, spec) in layers)
        {
            string name = layer.Name;
            if (ReferenceEquals(layer, output)) throw new ModelSpecException($"{name}: 'meprop' on the output layer, which meProp never sparsifies");
            bool conv = layer is Conv2d;
            SelectionPolicy selection = conv ? SelectionPolicy.PerChannel : SelectionPolicy.PerExample;
            if (spec.Selection is string text)
            {
                var names = Enum.GetValues<SelectionPolicy>().Select(MePropSetup.Cli).ToArray();
                int index = Array.IndexOf(names, text);
                if (index < 0) throw new ModelSpecException($"{name}: meprop selection '{text}' is not one of {string.Join(", ", names)}");
                selection = Enum.GetValues<SelectionPolicy>()[index];
            }
            var shape = spec.DecayShape switch
            {
                null or "full" => DecayShape.Full,
                "channel-position" => DecayShape.ChannelPosition,
                var other => throw new ModelSpecException($"{name}: meprop decay_shape '{other}' is not full or channel-position"),
            };
            var options = new MePropOptions { Ratio = spec.Ratio, Decay = spec.Decay, DecayShape = shape, Selection = selection, MassFraction = spec.MassFraction, ZeroMean = spec.ZeroMean };
            try { layer.Sparsifier = new GradientSparsifier(name, options, conv, seed + 7919 * ++stream); }
            catch (ArgumentException e) when (e is not ModelSpecException)
            {
                throw new ModelSpecException(e.Message.StartsWith(name + ":", StringComparison.Ordinal) ? e.Message : $"{name}: meprop {e.Message}");
            }
        }
    }

    private sealed class BuildContext(ComputeContext compute, Rng initRng, ulong seed)
    {
        public ComputeContext Compute { get; } = compute;
        public Rng InitRng { get; } = initRng;
        public ulong Seed { get; } = seed;
        public int Dropouts { get; set; }
        /// <summary>The names of the layers built so far, blocks' children included: a layer name is a checkpoint prefix and must be unique.</summary>
        public HashSet<string> Names { get; } = [];
        /// <summary>The layers built with "meprop", in layer order.</summary>
        public List<(IMePropLayer Layer, LayerMePropSpec Spec)> MeProp { get; } = [];
    }

    /// <summary>Builds <paramref name="specs"/> in order; <paramref name="shape"/> is the per-example shape going in and coming out.</summary>
    private static List<ILayer> BuildLayers(List<LayerSpec> specs, string prefix, ref int[] shape, BuildContext context)
    {
        var counters = new Dictionary<string, int>();
        var layers = new List<ILayer>();
        foreach (var spec in specs)
        {
            if (spec is null) throw new ModelSpecException($"{prefix}layers: an entry is null, not a layer");
            string name = LayerName(spec, prefix, counters);
            if (!context.Names.Add(name))
                throw new ModelSpecException($"{name}: another layer has this name; give each layer its own (unnamed layers get their kind and number: conv1, fc1, ...)");
            var layer = BuildLayer(spec, name, ref shape, context);
            if (spec.MeProp is not null) context.MeProp.Add(((IMePropLayer)layer, spec.MeProp));
            layers.Add(layer);
        }
        return layers;
    }

    /// <summary>The name a layer of a description gets: its own, or its kind numbered in its list (counted in <paramref name="counters"/>).</summary>
    private static string LayerName(LayerSpec spec, string prefix, Dictionary<string, int> counters)
    {
        string kind = Kind(spec.Type);
        int count = counters[kind] = counters.GetValueOrDefault(kind) + 1;
        // "flatten" and "normalize" stay unnumbered for the first one, as PyTorch models usually call them.
        return prefix + (spec.Name ?? (kind is "flatten" or "normalize" && count == 1 ? kind : $"{kind}{count}"));
    }

    /// <summary>
    /// <paramref name="model"/>'s description (<see cref="Sequential.Spec"/>) with each conv and linear layer's
    /// "meprop" as the layer has it now: meProp attached by hand is described, and building the result again
    /// attaches the same selection (with its own seed; a checkpoint restores the generator and running state).
    /// </summary>
    public static NetworkSpec WithAttachedMeProp(NetworkSpec spec, Sequential model) =>
        spec with { Layers = DescribeAttached(spec.Layers, "", model) };

    private static List<LayerSpec> DescribeAttached(List<LayerSpec> specs, string prefix, Sequential model)
    {
        var counters = new Dictionary<string, int>();
        var result = new List<LayerSpec>();
        foreach (var spec in specs)
        {
            string name = LayerName(spec, prefix, counters);
            var described = model.Layer(name) is IMePropLayer { Sparsifier: { } sparsifier }
                ? spec with { MeProp = Describe(sparsifier.Options) }
                : spec.Type is "conv2d" or "linear" ? spec with { MeProp = null } : spec;
            if (spec.Type == "residual")
                described = described with
                {
                    Layers = spec.Layers is null ? null : DescribeAttached(spec.Layers, name + ".", model),
                    Shortcut = spec.Shortcut is null ? null : DescribeAttached(spec.Shortcut, name + ".shortcut.", model),
                };
            result.Add(described);
        }
        return result;
    }

    private static LayerMePropSpec Describe(MePropOptions options) => new()
    {
        Ratio = options.Ratio,
        Decay = options.Decay,
        Selection = MePropSetup.Cli(options.Selection),
        DecayShape = options.DecayShape == DecayShape.ChannelPosition ? "channel-position" : null,
        MassFraction = options.MassFraction,
        ZeroMean = options.ZeroMean,
    };

    private static string Kind(string type) => type switch
    {
        "conv2d" => "conv",
        "linear" => "fc",
        "batchnorm" => "bn",
        "relu" or "sigmoid" or "tanh" => "act",
        "maxpool" or "avgpool" => "pool",
        "globalavgpool" => "gap",
        "dropout" => "dropout",
        "flatten" => "flatten",
        "residual" => "res",
        "normalize" => "normalize",
        _ => throw new ModelSpecException($"unknown layer type '{type}'; known types: {string.Join(", ", LayerSpec.Types)}"),
    };

    private static ILayer BuildLayer(LayerSpec spec, string name, ref int[] shape, BuildContext context)
    {
        var compute = context.Compute;
        ILayer layer;
        switch (spec.Type)
        {
            case "conv2d":
                Allow(spec, name, "out_channels", "kernel_size", "stride", "padding", "meprop");
                NeedImages(name, spec.Type, shape);
                int kernel = Required(spec.KernelSize, name, "kernel_size");
                int stride = Positive(spec.Stride ?? 1, name, "stride");
                layer = new Conv2d(name, shape[0], Required(spec.OutChannels, name, "out_channels"), kernel, stride, ConvPadding(spec, name, kernel, stride), compute, context.InitRng);
                break;
            case "linear":
                Allow(spec, name, "out_features", "meprop");
                if (shape.Length != 1)
                    throw new ModelSpecException($"{name}: linear needs features [F] per example, got [{string.Join(", ", shape)}]; add a flatten or globalavgpool before it");
                layer = new Linear(name, shape[0], Required(spec.OutFeatures, name, "out_features"), compute, context.InitRng);
                break;
            case "batchnorm":
                Allow(spec, name);
                layer = new BatchNorm(name, shape[0], compute) { ValuesPerExample = Tensor.ElementCount(shape.AsSpan(1)) };
                break;
            case "relu" or "sigmoid" or "tanh":
                Allow(spec, name);
                layer = new Activation(name, Enum.Parse<ActivationKind>(spec.Type, ignoreCase: true), compute);
                break;
            case "maxpool":
                Allow(spec, name, "kernel_size", "stride");
                NeedImages(name, spec.Type, shape);
                int maxKernel = Required(spec.KernelSize, name, "kernel_size");
                layer = new MaxPool2d(name, maxKernel, compute, Positive(spec.Stride ?? maxKernel, name, "stride"));
                break;
            case "avgpool":
                Allow(spec, name, "kernel_size", "stride");
                NeedImages(name, spec.Type, shape);
                int avgKernel = Required(spec.KernelSize, name, "kernel_size");
                layer = new AvgPool2d(name, avgKernel, Positive(spec.Stride ?? avgKernel, name, "stride"), compute);
                break;
            case "globalavgpool":
                Allow(spec, name);
                NeedImages(name, spec.Type, shape);
                layer = new GlobalAvgPool2d(name, compute);
                break;
            case "dropout":
                Allow(spec, name, "p");
                double p = spec.P ?? 0.5;
                if (!(p >= 0 && p < 1)) throw new ModelSpecException($"{name}: p must be in [0, 1), got {p}");
                layer = new Dropout(name, (float)p, Rng.ForStream(context.Seed, DropoutStreamBase + (ulong)context.Dropouts++));
                break;
            case "normalize":
                Allow(spec, name, "mean", "std");
                if (spec.Mean is null || spec.Std is null) throw new ModelSpecException($"{name}: normalize needs 'mean' and 'std'");
                if (shape.Length != 3 || shape[0] != spec.Mean.Length)
                    throw new ModelSpecException($"{name}: normalize takes images [C, H, W] with a mean and std per channel; got [{string.Join(", ", shape)}] and {spec.Mean.Length} mean(s)");
                try { layer = new Normalize(name, spec.Mean, spec.Std); }
                catch (ArgumentException e) when (e is not ModelSpecException) { throw new ModelSpecException(e.Message); }
                break;
            case "flatten":
                Allow(spec, name);
                layer = new Flatten(name);
                break;
            case "residual":
                Allow(spec, name, "layers", "shortcut");
                if (spec.Layers is not { Count: > 0 }) throw new ModelSpecException($"{name}: a residual block needs 'layers'");
                var bodyShape = shape;
                var body = BuildLayers(spec.Layers, name + ".", ref bodyShape, context);
                var shortcutShape = shape;
                var shortcut = BuildLayers(spec.Shortcut ?? [], name + ".shortcut.", ref shortcutShape, context);
                if (!bodyShape.AsSpan().SequenceEqual(shortcutShape))
                    throw new ModelSpecException($"{name}: the block's layers give [{string.Join(", ", bodyShape)}] but its {(spec.Shortcut is { Count: > 0 } ? "shortcut" : "identity shortcut")} gives [{string.Join(", ", shortcutShape)}]" +
                                                 (spec.Shortcut is { Count: > 0 } ? "" : "; add a shortcut (e.g. a 1x1 conv2d with the block's stride and out_channels)"));
                layer = new Residual(name, body, shortcut, compute);
                break;
            default:
                Kind(spec.Type); // throws for unknown types
                throw new ModelSpecException($"{name}: unhandled layer type '{spec.Type}'");
        }
        shape = OutputShape(layer, shape);
        return layer;
    }

    /// <summary>The layer's own shape rule applied to one example; its complaint becomes the spec's error.</summary>
    private static int[] OutputShape(ILayer layer, int[] shape)
    {
        int[] output;
        try { output = layer.OutputShape([1, .. shape]); }
        catch (ArgumentException e) { throw new ModelSpecException(e.Message); }
        if (output.Skip(1).Any(d => d < 1))
            throw new ModelSpecException($"{layer.Name}: input [{string.Join(", ", shape)}] gives an empty output [{string.Join(", ", output.Skip(1))}]");
        return output[1..];
    }

    private static void NeedImages(string name, string type, int[] shape)
    {
        if (shape.Length != 3)
            throw new ModelSpecException($"{name}: {type} needs images [C, H, W] per example, got [{string.Join(", ", shape)}]");
    }

    private static int ConvPadding(LayerSpec spec, string name, int kernel, int stride)
    {
        if (spec.Padding is not JsonElement padding) return 0;
        if (padding.ValueKind == JsonValueKind.Number && padding.TryGetInt32(out int pixels) && pixels >= 0) return pixels;
        if (padding.ValueKind == JsonValueKind.String && padding.GetString() == "same")
        {
            if (stride != 1 || kernel % 2 == 0)
                throw new ModelSpecException($"{name}: padding \"same\" needs stride 1 and an odd kernel_size, got stride {stride}, kernel_size {kernel}");
            return kernel / 2;
        }
        throw new ModelSpecException($"{name}: padding must be a number of pixels >= 0 or \"same\", got {padding.GetRawText()}");
    }

    private static int Required(int? value, string name, string field) =>
        Positive(value ?? throw new ModelSpecException($"{name}: '{field}' is required"), name, field);

    private static int Positive(int value, string name, string field) =>
        value >= 1 ? value : throw new ModelSpecException($"{name}: '{field}' must be >= 1, got {value}");

    /// <summary>Rejects fields set on a layer type they do not apply to (a typo or a misplaced field would otherwise be ignored).</summary>
    private static void Allow(LayerSpec spec, string name, params string[] fields)
    {
        var set = new List<string>();
        if (spec.OutChannels is not null) set.Add("out_channels");
        if (spec.KernelSize is not null) set.Add("kernel_size");
        if (spec.Stride is not null) set.Add("stride");
        if (spec.Padding is not null) set.Add("padding");
        if (spec.OutFeatures is not null) set.Add("out_features");
        if (spec.P is not null) set.Add("p");
        if (spec.Layers is not null) set.Add("layers");
        if (spec.Shortcut is not null) set.Add("shortcut");
        if (spec.Mean is not null) set.Add("mean");
        if (spec.Std is not null) set.Add("std");
        if (spec.MeProp is not null) set.Add("meprop");
        var wrong = set.Except(fields).ToList();
        if (wrong.Count > 0)
            throw new ModelSpecException($"{name}: {string.Join(", ", wrong.Select(f => $"'{f}'"))} does not apply to {spec.Type}" +
                                         (fields.Length > 0 ? $" (it takes {string.Join(", ", fields)})" : " (it takes no fields)"));
    }
}
