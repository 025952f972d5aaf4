using System.Globalization;
using System.Text.Json;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Optimizers;

namespace MeProp.Training;

/// <summary>Where a run stands at the end of an epoch: what resume needs besides tensors.</summary>
public sealed record TrainProgress
{
    public int EpochsCompleted { get; init; }
    public int BestEpoch { get; init; }
    public double? BestDevAccuracy { get; init; }
    public double BestTestAccuracy { get; init; }
    public double TrainSeconds { get; init; }
    /// <summary>Mean training loss of epoch 1, the reference of the divergence warning.</summary>
    public double? FirstEpochLoss { get; init; }
}

/// <summary>
/// Checkpoints in safetensors: model parameters under PyTorch names and layouts ("conv1.weight"
/// [out, in, kh, kw], "fc1.weight" [out, in]) so the weights load in PyTorch or TorchSharp as they are;
/// optimizer state under "optimizer.&lt;parameter&gt;.&lt;slot&gt;"; per-layer state (running statistics,
/// RNG states) from <see cref="IStatefulLayer"/>; and in the metadata the configuration, the optimizer
/// step and the <see cref="TrainProgress"/>. Written atomically (temporary file + rename).
/// </summary>
public static class Checkpoint
{
    private const string FormatKey = "format";
    private const string FormatValue = "meprop-checkpoint-1";

    public static void Save(string path, Sequential model, IOptimizer? optimizer, TrainOptions? options, TrainProgress? progress)
    {
        var file = new SafeTensorsFile();
        file.Metadata[FormatKey] = FormatValue;
        foreach (var p in model.Parameters) file.Add(p.Name, p.Value);
        foreach (var layer in model.AllLayers.OfType<IStatefulLayer>())
            foreach (var (name, tensor) in layer.StateTensors()) file.Add(name, tensor);
        foreach (var layer in model.AllLayers.OfType<IStatefulLayer>())
            foreach (var (key, value) in layer.StateMetadata()) file.Metadata[key] = value;
        if (optimizer is not null)
        {
            foreach (var (name, state) in optimizer.State()) file.Add("optimizer." + name, state);
            file.Metadata["optimizer_step"] = optimizer.Step.ToString(CultureInfo.InvariantCulture);
        }
        if (options is not null) file.Metadata["config"] = JsonSerializer.Serialize(options, Json.Line);
        if (progress is not null) file.Metadata["progress"] = JsonSerializer.Serialize(progress, Json.Line);
        file.Save(path);
    }

    /// <summary>Reads the configuration stored in a checkpoint written by training.</summary>
    public static TrainOptions ReadOptions(string path)
    {
        var file = SafeTensorsFile.Load(path);
        if (!file.Metadata.TryGetValue("config", out var config))
            throw new CheckpointFormatException($"{path}: no training configuration in the checkpoint metadata (was it written by 'meprop train'?)");
        return ParseMetadata<TrainOptions>(path, "config", config);
    }

    /// <summary>
    /// Fills the model (and the optimizer, when given) from a checkpoint. Every parameter must be present
    /// with the right shape; a mismatch is an error naming the file and the tensor.
    /// </summary>
    public static TrainProgress? Load(string path, Sequential model, IOptimizer? optimizer)
    {
        var file = SafeTensorsFile.Load(path);
        foreach (var p in model.Parameters) CopyInto(file, path, p.Name, p.Value);
        foreach (var layer in model.AllLayers.OfType<IStatefulLayer>())
        {
            // State tensors (running statistics, running gradients) take the saved shape: a running
            // gradient is sized by the batches it has seen.
            foreach (var (name, tensor) in layer.StateTensors())
            {
                if (!file.Contains(name)) throw new CheckpointFormatException($"{path}: tensor '{name}' is missing");
                var source = file.GetFloat32(name);
                tensor.Reshape(source.Shape);
                source.Span.CopyTo(tensor.Span);
            }
            layer.RestoreMetadata(file.Metadata);
        }
        if (optimizer is not null)
        {
            foreach (var (name, state) in optimizer.State()) CopyInto(file, path, "optimizer." + name, state);
            if (!file.Metadata.TryGetValue("optimizer_step", out var step) || !long.TryParse(step, CultureInfo.InvariantCulture, out long steps))
                throw new CheckpointFormatException($"{path}: metadata 'optimizer_step' is missing or not a number");
            optimizer.RestoreStep(steps);
        }
        return file.Metadata.TryGetValue("progress", out var progress) ? ParseMetadata<TrainProgress>(path, "progress", progress) : null;
    }

    /// <summary>A JSON metadata entry as <typeparamref name="T"/>; anything else is an error naming the file and the entry.</summary>
    private static T ParseMetadata<T>(string path, string key, string json) where T : class
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, Json.Line) ?? throw new CheckpointFormatException($"{path}: metadata '{key}' is empty");
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"{path}: metadata '{key}' is not a valid {typeof(T).Name} record ({e.Message})");
        }
    }

    private static void CopyInto(SafeTensorsFile file, string path, string name, Tensors.Tensor target)
    {
        if (!file.Contains(name)) throw new CheckpointFormatException($"{path}: tensor '{name}' is missing");
        var source = file.GetFloat32(name);
        if (!source.SameShape(target.Shape))
            throw new CheckpointFormatException($"{path}: tensor '{name}' has shape {source.ShapeText}, the model needs {target.ShapeText}");
        source.Span.CopyTo(target.Span);
    }
}
