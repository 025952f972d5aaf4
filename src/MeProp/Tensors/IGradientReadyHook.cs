namespace MeProp.Tensors;

/// <summary>
/// What an optimizer offers a layer's backward for one parameter (<see cref="Parameter.GradientHook"/>):
/// to apply its update as soon as the parameter's gradient is final, while the gradient is still in
/// cache, instead of in its own pass after the whole backward. The layer only says what it has; the
/// hook decides whether to act, and does nothing outside an optimizer step, so a Backward made for
/// other reasons (gradient checks, statistics) stays a plain one. Whatever it does, the parameters and
/// the optimizer's state come out bit for bit as with the plain backward followed by the optimizer's
/// own pass.
/// <para>
/// Where it pays: the saving is the gradient's trip to memory and back, so it is large only for a
/// parameter too big to stay in cache between its backward and the optimizer's pass, and whose
/// gradient can be consumed block by block as it is summed, which a dense linear backward offers
/// (<see cref="TryFuseLinearBackward"/>). A convolution's weight gradient is small (the batch's
/// positions are summed into kernel-sized rows) and still in cache when the optimizer's pass comes, so
/// convolutions offer nothing.
/// </para>
/// </summary>
public interface IGradientReadyHook
{
    /// <summary>
    /// <paramref name="parameter"/>'s Gradient now holds its whole gradient for this step, and the layer
    /// will not read its Value again in this backward. The hook may apply its update now and clear the
    /// gradient (the optimizer's own pass then leaves the parameter alone) or leave both for that pass.
    /// </summary>
    void GradientReady(Parameter parameter);

    /// <summary>
    /// Offered by a dense linear backward before it forms the gradient of <paramref name="weight"/>
    /// [O, I] as dW = dYᵀ·X from dY [batch, O] (<paramref name="outputGradient"/>) and X [batch, I]
    /// (<paramref name="input"/>), and dX = dY·W [batch, I] (<paramref name="inputGradient"/>; empty when
    /// the layer needs no dX). Returns true when the hook did both: its update applied to the weight from
    /// dW as each block of dW was summed (dW never stored, the weight's Gradient untouched) and dX written
    /// from the weights before the update. Returns false to let the layer compute them as usual.
    /// </summary>
    bool TryFuseLinearBackward(Parameter weight, ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> input, int batch, Span<float> inputGradient);
}
