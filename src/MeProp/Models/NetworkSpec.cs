using System.Text.Json;
using System.Text.Json.Serialization;

namespace MeProp.Models;

/// <summary>
/// A network described as data: the input shape [C, H, W], the number of classes, and the layers in order,
/// with PyTorch's argument names. It is what `meprop train --model net.json` reads, what the fluent
/// <see cref="NetworkBuilder"/> produces, and what a checkpoint stores so the network can be rebuilt.
/// <code>
/// {"input": [1, 28, 28], "classes": 10, "layers": [
///   {"type": "conv2d", "out_channels": 32, "kernel_size": 5, "padding": "same"}, {"type": "relu"},
///   {"type": "maxpool", "kernel_size": 2}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]}
/// </code>
/// </summary>
public sealed record NetworkSpec
{
    [JsonPropertyName("input")] public required int[] Input { get; init; }
    [JsonPropertyName("classes")] public required int Classes { get; init; }
    [JsonPropertyName("layers")] public required List<LayerSpec> Layers { get; init; }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    /// <summary>Parses a network file's text; <paramref name="source"/> (a path) names it in errors.</summary>
    public static NetworkSpec Parse(string json, string source)
    {
        try
        {
            var spec = JsonSerializer.Deserialize<NetworkSpec>(json, JsonOptions) ?? throw new JsonException("the file holds null");
            return spec;
        }
        catch (JsonException e)
        {
            string where = e.Path is { Length: > 0 } path ? $" at {path}" : "";
            throw new ModelSpecException($"{source}: not a network description{where}: {FirstSentence(e.Message)}");
        }
    }

    /// <summary>Reads and parses a network file.</summary>
    public static NetworkSpec Load(string path)
    {
        if (!File.Exists(path)) throw new ModelSpecException($"{path}: network file not found");
        return Parse(File.ReadAllText(path), path);
    }

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    private static string FirstSentence(string message)
    {
        int cut = message.IndexOf(". Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}

/// <summary>
/// One layer of a <see cref="NetworkSpec"/>. <see cref="Type"/> says which fields apply: conv2d
/// (out_channels, kernel_size, stride = 1, padding = 0 or "same"), linear (out_features), batchnorm,
/// relu | sigmoid | tanh, maxpool and avgpool (kernel_size, stride = kernel_size), globalavgpool,
/// dropout (p), flatten, residual (layers, shortcut: y = layers(x) + shortcut(x), identity when no
/// shortcut), normalize (mean, std: one per channel; y = (x - mean) / std); conv2d and linear also take
/// meprop (<see cref="LayerMePropSpec"/>). <see cref="Name"/> is optional: absent names are generated per kind (conv1, conv2, fc1, bn1,
/// act1, pool1, res1, ...), and a residual block's layers are named inside it ("res1.conv1",
/// "res1.shortcut.conv1").
/// </summary>
public sealed record LayerSpec
{
    [JsonPropertyName("type")] public required string Type { get; init; }
    [JsonPropertyName("name")] public string? Name { get; init; }
    [JsonPropertyName("out_channels")] public int? OutChannels { get; init; }
    [JsonPropertyName("kernel_size")] public int? KernelSize { get; init; }
    [JsonPropertyName("stride")] public int? Stride { get; init; }
    /// <summary>A number of pixels, or "same" (odd kernel, stride 1).</summary>
    [JsonPropertyName("padding")] public JsonElement? Padding { get; init; }
    [JsonPropertyName("out_features")] public int? OutFeatures { get; init; }
    [JsonPropertyName("p")] public double? P { get; init; }
    [JsonPropertyName("layers")] public List<LayerSpec>? Layers { get; init; }
    [JsonPropertyName("shortcut")] public List<LayerSpec>? Shortcut { get; init; }
    /// <summary>normalize: per-channel mean and standard deviation.</summary>
    [JsonPropertyName("mean")] public float[]? Mean { get; init; }
    [JsonPropertyName("std")] public float[]? Std { get; init; }
    /// <summary>conv2d and linear: meProp on this layer, applied when the model is built (not written when absent).</summary>
    [JsonPropertyName("meprop")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public LayerMePropSpec? MeProp { get; init; }

    /// <summary>The kinds of layer a spec can name.</summary>
    public static readonly string[] Types =
        ["conv2d", "linear", "batchnorm", "relu", "sigmoid", "tanh", "maxpool", "avgpool", "globalavgpool", "dropout", "flatten", "residual", "normalize"];
}

/// <summary>
/// A layer's meProp settings in a network file, <c>"meprop": {"ratio": 0.05, "decay": 0.6, "selection": "per-channel"}</c>:
/// ratio in (0, 1], decay in [0, 1) (default 0), selection as on the command line (default per-channel
/// for conv2d, per-example for linear), decay_shape "full" (default) or "channel-position", and
/// mass_fraction for an adaptive k (<see cref="Sparsity.MePropOptions.MassFraction"/>), zero_mean to shift the
/// kept values of each unit to mean zero (<see cref="Sparsity.MePropOptions.ZeroMean"/>). The command
/// line's --topk replaces them on the layers it chooses.
/// </summary>
public sealed record LayerMePropSpec
{
    [JsonPropertyName("ratio")] public required double Ratio { get; init; }
    [JsonPropertyName("decay")] public double Decay { get; init; }
    [JsonPropertyName("selection")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Selection { get; init; }
    [JsonPropertyName("decay_shape")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? DecayShape { get; init; }
    [JsonPropertyName("mass_fraction")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? MassFraction { get; init; }
    [JsonPropertyName("zero_mean")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool ZeroMean { get; init; }
}

/// <summary>A network description that cannot be built: a bad field, a missing one, or shapes that do not fit.</summary>
public sealed class ModelSpecException(string message) : ArgumentException(message);
