namespace MeProp.Layers;

/// <summary>
/// A parameter-free layer that can say whether dL/dy at the zeros of its output is ignored: nothing
/// computed from it reaches a parameter gradient. ReLU ignores it always (dx = dy·[y &gt; 0]); max
/// pooling sends dy to an input equal to the output, and flatten and dropout keep each value's position,
/// so they ignore it when the layer before them ignores the gradient at its own zeros. A model asks
/// this of the layers in front of a linear layer, which then need not compute dL/dx where its input is
/// zero (<see cref="Linear.InputZerosNeedNoGradient"/>).
/// </summary>
public interface IIgnoresGradientAtZeros : ILayer
{
    /// <summary>
    /// Whether dL/dy at this layer's zero outputs is ignored, given whether dL/dx at its input's zeros is
    /// (<paramref name="inputZerosIgnored"/>).
    /// </summary>
    bool IgnoresGradientAtZeroOutputs(bool inputZerosIgnored);
}
