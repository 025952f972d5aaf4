using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// A layer with state other than its parameters that a checkpoint must keep for an exact resume:
/// batch-norm running statistics, meProp running gradients, a dropout RNG.
/// </summary>
public interface IStatefulLayer
{
    /// <summary>
    /// True when the state is part of the trained model, as PyTorch's state_dict holds it (batch norm's running
    /// statistics): saved in model-only files (best.safetensors) and read from PyTorch's. False (the default)
    /// for training state only (meProp running gradients, RNG states), which only full checkpoints
    /// (last.safetensors) keep.
    /// </summary>
    bool IsModelState => false;

    /// <summary>Tensors to save, by checkpoint name (e.g. "bn1.running_mean"); filled in place on load.</summary>
    IEnumerable<(string Name, Tensor Tensor)> StateTensors();

    /// <summary>Integer scalars saved as int64 tensors of shape [] (e.g. "bn1.num_batches_tracked"); none by default.</summary>
    IEnumerable<(string Name, long Value)> StateCounters() => [];

    /// <summary>Restores one of <see cref="StateCounters"/> by name.</summary>
    void RestoreCounter(string name, long value) => throw new ArgumentException($"no counter '{name}' in this layer's state");

    /// <summary>Small state as metadata strings (e.g. an RNG state).</summary>
    IEnumerable<(string Key, string Value)> StateMetadata();

    /// <summary>Restores what <see cref="StateMetadata"/> wrote.</summary>
    void RestoreMetadata(IReadOnlyDictionary<string, string> metadata);
}
