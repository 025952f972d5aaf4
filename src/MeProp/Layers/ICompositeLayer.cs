namespace MeProp.Layers;

/// <summary>
/// A layer made of other layers (a residual block). Its <see cref="ILayer.Parameters"/> are all of its
/// children's; the model reaches the children through <see cref="Children"/> for what is per layer
/// (checkpoint state, meProp, counters). Children are named with the composite's name as a prefix
/// ("block1.conv1"), so their parameter names are unique and match the PyTorch module path.
/// </summary>
public interface ICompositeLayer : ILayer
{
    /// <summary>The layers inside, in the order they run (a residual block: body, then shortcut).</summary>
    IReadOnlyList<ILayer> Children { get; }
}
