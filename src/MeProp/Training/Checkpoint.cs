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
/// Checkpoints in safetensors, tensors under PyTorch names and layouts ("conv1.weight" [out, in, kh, kw],
/// "fc1.weight" [out, in], "bn1.running_mean" [C], "bn1.num_batches_tracked" int64 []). Two kinds:
/// <list type="bullet">
/// <item>a full training checkpoint (<see cref="Save"/>, last.safetensors, metadata format
/// "meprop-checkpoint-1", float32 tensors only): parameters, the state tensors of <see cref="IStatefulLayer"/>s
/// (batch norm's running statistics, meProp running gradients), optimizer state under
/// "optimizer.&lt;parameter&gt;.&lt;slot&gt;", and in the metadata the layers' small state (batch norm's
/// num_batches_tracked, RNG states), the configuration, the optimizer step and the <see cref="TrainProgress"/>;</item>
/// <item>a model-only file (<see cref="SaveModel"/>, best.safetensors, format "meprop-model-1"): parameters and
/// the model state (batch norm's running statistics) only, exactly the keys, dtypes and shapes of the
/// equivalent PyTorch module's state_dict, so it loads there with load_state_dict(strict=True); the metadata
/// keeps the configuration (what eval rebuilds the network from) and the progress.</item>
/// </list>
/// Both are written atomically (temporary file + rename). <see cref="LoadWeights"/> reads a state_dict
/// written by PyTorch (or a model-only file) strictly.
/// </summary>
public static class Checkpoint
{
    private const string FormatKey = "format";
    /// <summary>The format of full training checkpoints (every checkpoint written before model-only files existed).</summary>
    private const string FormatValue = "meprop-checkpoint-1";
    private const string ModelFormatValue = "meprop-model-1";

    /// <summary>Writes a full training checkpoint: the model, layers' training state and, when given, the optimizer's.</summary>
    public static void Save(string path, Sequential model, IOptimizer? optimizer, TrainOptions? options, TrainProgress? progress)
    {
        var file = new SafeTensorsFile();
        file.Metadata[FormatKey] = FormatValue;
        // The layout of every full checkpoint so far, kept as it is so runs resume across builds (both ways):
        // float32 tensors only, batch norm's num_batches_tracked in the metadata (StateMetadata).
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

    /// <summary>
    /// Writes the model only: parameters and model state (batch norm's running_mean, running_var and
    /// num_batches_tracked as int64 []), as PyTorch's state_dict holds them; no meProp running gradients, RNG
    /// or optimizer state. The metadata keeps the configuration and the progress when given.
    /// </summary>
    public static void SaveModel(string path, Sequential model, TrainOptions? options, TrainProgress? progress = null)
    {
        var file = new SafeTensorsFile();
        file.Metadata[FormatKey] = ModelFormatValue;
        AddModel(file, model);
        if (options is not null) file.Metadata["config"] = JsonSerializer.Serialize(options, Json.Line);
        if (progress is not null) file.Metadata["progress"] = JsonSerializer.Serialize(progress, Json.Line);
        file.Save(path);
    }

    private static void AddModel(SafeTensorsFile file, Sequential model)
    {
        foreach (var p in model.Parameters) file.Add(p.Name, p.Value);
        foreach (var layer in model.AllLayers.OfType<IStatefulLayer>().Where(layer => layer.IsModelState))
        {
            foreach (var (name, tensor) in layer.StateTensors()) file.Add(name, tensor);
            foreach (var (name, value) in layer.StateCounters()) file.AddInt64(name, [value]);
        }
    }

    /// <summary>
    /// The tensors a model-only file of <paramref name="model"/> holds, in order, with PyTorch's dtype names
    /// ("float32", "int64") and shapes: the state_dict keys of the equivalent PyTorch module.
    /// </summary>
    public static IReadOnlyList<(string Name, string DType, int[] Shape)> ModelTensors(Sequential model)
    {
        var tensors = new List<(string, string, int[])>();
        foreach (var p in model.Parameters) tensors.Add((p.Name, "float32", p.Value.ShapeArray()));
        foreach (var layer in model.AllLayers.OfType<IStatefulLayer>().Where(layer => layer.IsModelState))
        {
            foreach (var (name, tensor) in layer.StateTensors()) tensors.Add((name, "float32", tensor.ShapeArray()));
            foreach (var (name, _) in layer.StateCounters()) tensors.Add((name, "int64", []));
        }
        return tensors;
    }

    /// <summary>Reads the configuration stored in a checkpoint written by training.</summary>
    public static TrainOptions ReadOptions(string path)
    {
        var file = SafeTensorsFile.Load(path);
        if (!file.Metadata.TryGetValue("config", out var config))
            throw new CheckpointFormatException($"{path}: no training configuration in the checkpoint metadata (was it written by 'meprop train'?)");
        var options = ParseMetadata<TrainOptions>(path, "config", config);
        // Runs from before the option trained with the dense products throughout; resuming keeps that.
        using var document = JsonDocument.Parse(config);
        return document.RootElement.TryGetProperty("exact_sparsity", out _) ? options : options with { ExactSparsity = ExactSparsity.Off };
    }

    /// <summary>
    /// Fills the model (and the optimizer, when given) from a checkpoint: a full one, or a model-only one
    /// (best.safetensors, or any file not marked as a full checkpoint, such as one written by PyTorch), whose
    /// layers' training state (meProp running gradients, RNG states) is left as it is. Every parameter and
    /// model state tensor must be present with the right shape; a mismatch is an error naming the file and the
    /// tensor. Other tensors in the file are not read (see <see cref="LoadWeights"/> for a strict load).
    /// A counter such as num_batches_tracked is read from its int64 tensor when the file has one (model-only
    /// files, PyTorch's), else from the metadata (full checkpoints). A refused load leaves the model and the
    /// optimizer as they were.
    /// </summary>
    public static TrainProgress? Load(string path, Sequential model, IOptimizer? optimizer)
    {
        var file = SafeTensorsFile.Load(path);
        bool full = file.Metadata.TryGetValue(FormatKey, out var format) && format == FormatValue;
        if (optimizer is not null && !full)
            throw new CheckpointFormatException($"{path}: holds the model only (format '{format ?? "none"}'), not the optimizer state to resume from; resume from {Trainer.LastCheckpoint}");
        if (optimizer is not null)
        {
            // Resuming without the run's meProp would go on training another method, silently. Checked before
            // anything is copied, so that a refused resume leaves the model as it was.
            var withMeProp = model.AllLayers.OfType<IMePropLayer>().Where(l => l.Sparsifier is not null).Select(l => l.Name).ToHashSet();
            const string MePropState = ".meprop.rng";
            foreach (string key in file.Metadata.Keys)
                if (key.EndsWith(MePropState, StringComparison.Ordinal) && !withMeProp.Contains(key[..^MePropState.Length]))
                    throw new CheckpointFormatException($"{path}: the run had meProp on layer '{key[..^MePropState.Length]}', which the model to resume has none on; build the model as the run did");
        }
        // Whatever is found wrong (a tensor missing or mis-shaped, an optimizer of another kind, a malformed
        // entry) may only show once part of the file has been copied: the state it replaces is put back then.
        var before = new StateSnapshot(model, optimizer);
        try
        {
            return Fill(file, path, full, model, optimizer);
        }
        catch
        {
            before.Restore();
            throw;
        }
    }

    private static TrainProgress? Fill(SafeTensorsFile file, string path, bool full, Sequential model, IOptimizer? optimizer)
    {
        foreach (var p in model.Parameters) CopyInto(file, path, p.Name, p.Value);
        foreach (var layer in model.AllLayers.OfType<IStatefulLayer>())
        {
            if (layer.IsModelState)
            {
                foreach (var (name, tensor) in layer.StateTensors()) CopyInto(file, path, name, tensor);
                bool inMetadata = false;
                foreach (var (name, _) in layer.StateCounters())
                {
                    if (file.Contains(name)) RestoreCounter(file, path, layer, name);
                    else inMetadata = true;
                }
                if (inMetadata) RestoreMetadata(path, layer, file.Metadata);
            }
            else if (full)
            {
                // Training state takes the saved shape: a running gradient is sized by the batches it has seen.
                foreach (var (name, tensor) in layer.StateTensors())
                {
                    if (!file.Contains(name)) throw new CheckpointFormatException($"{path}: tensor '{name}' is missing");
                    var source = file.GetFloat32(name);
                    tensor.Reshape(source.Shape);
                    source.Span.CopyTo(tensor.Span);
                }
                RestoreMetadata(path, layer, file.Metadata);
            }
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

    /// <summary>
    /// Loads the weights of <paramref name="model"/> strictly, as PyTorch's load_state_dict(strict=True): the
    /// file must hold exactly the parameters and model state (batch norm's running_mean, running_var as
    /// float32, num_batches_tracked as int64 of shape []) with the model's shapes, no more and no less. Any
    /// missing, unexpected, mis-shaped or mis-typed tensor is an error naming each; float64 (or any dtype but
    /// F32 and I64) is rejected when the file is read, not converted. The metadata is not read. For
    /// safetensors files written from a PyTorch state_dict of the same architecture, and for model-only
    /// files (best.safetensors); a full training checkpoint goes through <see cref="Load"/>.
    /// </summary>
    public static void LoadWeights(string path, Sequential model)
    {
        var file = SafeTensorsFile.Load(path);
        var expected = ModelTensors(model);
        var problems = new List<string>();
        var missing = expected.Where(t => !file.Contains(t.Name)).Select(t => t.Name).ToList();
        var known = expected.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var unexpected = file.Names.Where(name => !known.Contains(name)).ToList();
        if (missing.Count > 0) problems.Add("missing " + NameList(missing));
        if (unexpected.Count > 0)
            problems.Add("unexpected " + NameList(unexpected)
                + (file.Metadata.TryGetValue(FormatKey, out var format) && format == FormatValue ? " (a full training checkpoint: use Checkpoint.Load)" : ""));
        foreach (var (name, dtype, shape) in expected.Where(t => file.Contains(t.Name)))
        {
            string fileDType = file.GetDType(name) == SafeTensorsDType.F32 ? "float32" : "int64";
            int[] fileShape = file.GetShape(name);
            if (fileDType != dtype) problems.Add($"'{name}' is {fileDType}, the model needs {dtype}");
            else if (!fileShape.AsSpan().SequenceEqual(shape))
                problems.Add($"'{name}' has shape [{string.Join(", ", fileShape)}], the model needs [{string.Join(", ", shape)}]");
        }
        if (problems.Count > 0)
            throw new CheckpointFormatException($"{path}: does not match the model: {string.Join("; ", problems)}");

        foreach (var p in model.Parameters) CopyInto(file, path, p.Name, p.Value);
        foreach (var layer in model.AllLayers.OfType<IStatefulLayer>().Where(layer => layer.IsModelState))
        {
            foreach (var (name, tensor) in layer.StateTensors()) CopyInto(file, path, name, tensor);
            foreach (var (name, _) in layer.StateCounters()) RestoreCounter(file, path, layer, name);
        }
    }

    private static string NameList(List<string> names) =>
        (names.Count == 1 ? "tensor " : $"{names.Count} tensors: ")
        + string.Join(", ", names.Take(8).Select(name => $"'{name}'")) + (names.Count > 8 ? $", and {names.Count - 8} more" : "");

    private static void RestoreCounter(SafeTensorsFile file, string path, IStatefulLayer layer, string name)
    {
        if (file.GetDType(name) != SafeTensorsDType.I64 || file.GetShape(name).Length != 0)
            throw new CheckpointFormatException($"{path}: tensor '{name}' is {file.GetDType(name)} [{string.Join(", ", file.GetShape(name))}], expected an int64 scalar (shape [])");
        try
        {
            layer.RestoreCounter(name, file.GetInt64(name)[0]);
        }
        catch (ArgumentException e)
        {
            throw new CheckpointFormatException($"{path}: {e.Message}", e);
        }
    }

    private static void RestoreMetadata(string path, IStatefulLayer layer, IReadOnlyDictionary<string, string> metadata)
    {
        try
        {
            layer.RestoreMetadata(metadata);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            throw new CheckpointFormatException($"{path}: {e.Message}", e);
        }
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

    /// <summary>Everything <see cref="Load"/> may overwrite, copied, so that a refused load can put it back.</summary>
    private sealed class StateSnapshot
    {
        private readonly List<(Tensors.Tensor Target, int[] Shape, float[] Values)> _tensors = [];
        private readonly List<(IStatefulLayer Layer, (string Name, long Value)[] Counters, Dictionary<string, string> Metadata)> _layers = [];
        private readonly IOptimizer? _optimizer;
        private readonly long _optimizerStep;

        public StateSnapshot(Sequential model, IOptimizer? optimizer)
        {
            foreach (var p in model.Parameters) Keep(p.Value);
            foreach (var layer in model.AllLayers.OfType<IStatefulLayer>())
            {
                foreach (var (_, tensor) in layer.StateTensors()) Keep(tensor);
                _layers.Add((layer, layer.StateCounters().ToArray(), layer.StateMetadata().ToDictionary(e => e.Key, e => e.Value)));
            }
            if (optimizer is null) return;
            foreach (var (_, state) in optimizer.State()) Keep(state);
            _optimizer = optimizer;
            _optimizerStep = optimizer.Step;
        }

        private void Keep(Tensors.Tensor tensor) => _tensors.Add((tensor, tensor.ShapeArray(), tensor.Span.ToArray()));

        public void Restore()
        {
            foreach (var (target, shape, values) in _tensors)
            {
                target.Reshape(shape);
                values.CopyTo(target.Span);
            }
            foreach (var (layer, counters, metadata) in _layers)
            {
                foreach (var (name, value) in counters) layer.RestoreCounter(name, value);
                layer.RestoreMetadata(metadata);
            }
            _optimizer?.RestoreStep(_optimizerStep);
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
