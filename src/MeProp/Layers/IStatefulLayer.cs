using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// A layer with state other than its parameters that a checkpoint must keep for an exact resume:
/// batch-norm running statistics, meProp running gradients, a dropout RNG.
/// </summary>
public interface IStatefulLayer
{
    /// <summary>Tensors to save, by checkpoint name (e.g. "bn1.running_mean"); filled in place on load.</summary>
    IEnumerable<(string Name, Tensor Tensor)> StateTensors();

    /// <summary>Small state as metadata strings (e.g. an RNG state).</summary>
    IEnumerable<(string Key, string Value)> StateMetadata();

    /// <summary>Restores what <see cref="StateMetadata"/> wrote.</summary>
    void RestoreMetadata(IReadOnlyDictionary<string, string> metadata);
}
