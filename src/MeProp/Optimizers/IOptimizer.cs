using MeProp.Tensors;

namespace MeProp.Optimizers;

/// <summary>
/// Updates parameters from their gradients and clears the gradients in the same pass, so Backward
/// can add into them next step without a separate zeroing sweep.
/// </summary>
public interface IOptimizer
{
    /// <summary>Steps taken so far (Adam's t).</summary>
    long Step { get; }

    /// <summary>One update of every parameter, then gradients set to zero.</summary>
    void Update();

    /// <summary>Per-parameter state tensors for checkpoints, keyed "&lt;param&gt;.&lt;slot&gt;" (e.g. "conv1.weight.exp_avg").</summary>
    IEnumerable<(string Name, Tensor State)> State();

    /// <summary>Restores the step counter after the state tensors have been filled in place.</summary>
    void RestoreStep(long step);
}
