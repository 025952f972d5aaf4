using MeProp.Tensors;

namespace MeProp.Layers;

/// <summary>
/// A network layer: Forward maps an input batch to an output batch, Backward maps dL/dy to dL/dx and
/// adds the parameter gradients into each <see cref="Parameter.Gradient"/>. A layer owns its output
/// and input-gradient buffers (valid until its next call) and whatever it keeps from Forward for
/// Backward, so Backward must follow the Forward of the same batch.
/// </summary>
public interface ILayer
{
    /// <summary>Name used on the command line and as the checkpoint prefix ("conv1").</summary>
    string Name { get; }

    /// <summary>Learnable parameters, empty for parameter-free layers.</summary>
    IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>Shape of the output for an input of the given shape (batch first).</summary>
    int[] OutputShape(ReadOnlySpan<int> inputShape);

    /// <summary>Computes the output; <paramref name="training"/> selects batch statistics, dropout and saving state for Backward.</summary>
    Tensor Forward(Tensor input, bool training);

    /// <summary>
    /// Takes dL/dy, adds dL/dW into the parameter gradients, and returns dL/dx, or null when
    /// <see cref="ComputeInputGradient"/> is false (the first layer needs no dL/dx).
    /// </summary>
    Tensor? Backward(Tensor outputGradient);

    /// <summary>Whether Backward computes dL/dx. The model turns it off for its layers up to the first with parameters.</summary>
    bool ComputeInputGradient { get; set; }
}
