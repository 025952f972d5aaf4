using System.Text;
using MeProp.Layers;

namespace MeProp.Models;

/// <summary>One row of a <see cref="ModelSummary"/>: a layer, its output shape per example and its costs per example.</summary>
/// <param name="Depth">0 for top-level layers, 1 inside a residual block, and so on.</param>
/// <param name="Name">The layer's name in the model (dotted inside blocks: res1.conv1).</param>
/// <param name="Type">The layer's class name (Conv2d, Linear, Residual, ...).</param>
/// <param name="OutputShape">The layer's output shape for one example ([C, H, W] or [features]).</param>
/// <param name="Parameters">Learnable scalars of the layer (of its children, for a block).</param>
/// <param name="ForwardMacs">Multiply-adds of the forward pass per example (conv and linear layers; 0 for the rest).</param>
/// <param name="BackwardMacs">
/// Multiply-adds of the dense backward per example: dW, and dx unless the layer computes none
/// (<see cref="ILayer.ComputeInputGradient"/>: the model turns it off up to its first layer with parameters).
/// </param>
public sealed record SummaryRow(int Depth, string Name, string Type, int[] OutputShape, long Parameters, long ForwardMacs, long BackwardMacs);

/// <summary>
/// A table of a model's layers, like torchinfo's or Keras' summary(): output shape, parameters, and the
/// multiply-adds of the forward and of the dense backward, per example, with totals. meProp's backward does
/// a fraction of the conv and linear layers' backward multiply-adds (about k/n of them).
/// </summary>
public sealed class ModelSummary
{
    /// <summary>Summarises <paramref name="model"/> for one example of <paramref name="inputShape"/>, any shape its Forward takes.</summary>
    public ModelSummary(Sequential model, int[] inputShape)
    {
        var rows = new List<SummaryRow>();
        // The first layer sees what the model's Forward gives it (images flattened for an input [features]).
        var shape = model.FirstLayerInputShape([1, .. inputShape])[1..];
        foreach (var layer in model.Layers) shape = Walk(layer, shape, 0, rows);
        Rows = rows;
        Parameters = model.ParameterCount;
        ForwardMacs = rows.Where(r => r.Depth == 0).Sum(r => r.ForwardMacs);
        BackwardMacs = rows.Where(r => r.Depth == 0).Sum(r => r.BackwardMacs);
        InputShape = inputShape;
    }

    public IReadOnlyList<SummaryRow> Rows { get; }
    public int[] InputShape { get; }
    public long Parameters { get; }
    public long ForwardMacs { get; }
    public long BackwardMacs { get; }

    private static int[] Walk(ILayer layer, int[] input, int depth, List<SummaryRow> rows)
    {
        int[] output = layer.OutputShape([1, .. input])[1..];
        int at = rows.Count;
        long forward = 0, backward = 0;
        if (layer is Residual block)
        {
            rows.Add(null!); // the block's row, filled in after its children
            int[] shape = input;
            foreach (var child in block.Body) shape = Walk(child, shape, depth + 1, rows);
            shape = input;
            foreach (var child in block.Shortcut) shape = Walk(child, shape, depth + 1, rows);
            var children = rows.Skip(at + 1).Where(r => r.Depth == depth + 1).ToList();
            forward = children.Sum(r => r.ForwardMacs);
            backward = children.Sum(r => r.BackwardMacs);
        }
        else
        {
            long weightMacs = layer switch
            {
                Conv2d conv => (long)conv.OutChannels * output[1] * output[2] * conv.InChannels * conv.KernelSize * conv.KernelSize,
                Linear linear => (long)linear.InFeatures * linear.OutFeatures,
                _ => 0,
            };
            forward = weightMacs;
            // dW costs what the forward does, and so does dx. Whether the layer computes dx is the layer's
            // own setting (the model's rule sets it), so the table counts what the backward runs.
            backward = layer.ComputeInputGradient ? 2 * weightMacs : weightMacs;
        }
        long parameters = layer.Parameters.Sum(p => (long)p.Value.Length);
        var row = new SummaryRow(depth, layer.Name, layer.GetType().Name, output, parameters, forward, backward);
        if (layer is Residual) rows[at] = row;
        else rows.Add(row);
        return output;
    }

    /// <summary>The table as text, one layer a line, nested layers indented.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        string Shape(int[] s) => "[" + string.Join(", ", s) + "]";
        var lines = Rows.Select(r => (Name: new string(' ', 2 * r.Depth) + r.Name, r.Type, Shape: Shape(r.OutputShape),
            Params: r.Parameters.ToString("N0"), Forward: r.ForwardMacs.ToString("N0"), Backward: r.BackwardMacs.ToString("N0"))).ToList();
        int name = Math.Max(5, lines.Max(l => l.Name.Length)), type = Math.Max(4, lines.Max(l => l.Type.Length)),
            shape = Math.Max(12, lines.Max(l => l.Shape.Length)), param = Math.Max(6, Parameters.ToString("N0").Length),
            forward = Math.Max(12, ForwardMacs.ToString("N0").Length), backward = Math.Max(13, BackwardMacs.ToString("N0").Length);
        string Line(string a, string b, string c, string d, string e, string f) =>
            $"{a.PadRight(name)}  {b.PadRight(type)}  {c.PadRight(shape)}  {d.PadLeft(param)}  {e.PadLeft(forward)}  {f.PadLeft(backward)}";
        text.AppendLine(Line("layer", "type", "output shape", "params", "forward MACs", "backward MACs"));
        text.AppendLine(new string('-', name + type + shape + param + forward + backward + 10));
        foreach (var l in lines) text.AppendLine(Line(l.Name, l.Type, l.Shape, l.Params, l.Forward, l.Backward));
        text.AppendLine(new string('-', name + type + shape + param + forward + backward + 10));
        text.AppendLine(Line("total", "", $"input {Shape(InputShape)}", Parameters.ToString("N0"), ForwardMacs.ToString("N0"), BackwardMacs.ToString("N0")));
        text.AppendLine("Shapes and multiply-adds are per example; backward MACs are the dense backward's (meProp does about k/n of them).");
        return text.ToString();
    }
}
