using System.Reflection;
using System.Runtime.InteropServices;
using Google.Protobuf;
using MeProp.Export.Onnx;
using MeProp.Layers;
using MeProp.Models;

namespace MeProp.Export;

/// <summary>
/// Writes a model as a standard ONNX file (opset <see cref="Opset"/>, IR version 8), the whole network inside
/// the graph, for inference: input <see cref="InputName"/> float32 [N, C, H, W] (N dynamic) of the values the
/// model is fed (pixels scaled to [0, 1]; a <see cref="Normalize"/> layer is part of the graph), output
/// <see cref="OutputName"/> [N, classes]. The weights are float32 initializers under the layers' parameter
/// names (PyTorch's: "conv1.weight", "bn1.running_var"), a normalisation's as "name.mean" and "name.std".
/// Mapping: Conv2d -> Conv; Linear -> Gemm (transB = 1); BatchNorm -> BatchNormalization with the running
/// statistics; Activation -> Relu, Sigmoid or Tanh; MaxPool2d, AvgPool2d -> MaxPool, AveragePool (no padding,
/// floor); GlobalAvgPool2d -> GlobalAveragePool then Flatten; Flatten -> Flatten (axis 1); Dropout -> nothing
/// (identity at inference); Normalize -> Sub and Div by [1, C, 1, 1] constants; Residual -> its body, its
/// shortcut (the identity when empty) and Add. Any other layer type is an error naming the layer.
/// </summary>
public static class OnnxExporter
{
    /// <summary>The ONNX operator set the graph uses (the default domain).</summary>
    public const int Opset = 17;

    /// <summary>IR version 8: ONNX 1.10 to 1.12, what opset 17 needs at least.</summary>
    private const long IrVersion = 8;

    public const string InputName = "input";
    public const string OutputName = "logits";

    /// <summary>Writes the ONNX model of <paramref name="model"/> for examples of shape <paramref name="inputShape"/> ([C, H, W]) to <paramref name="output"/>.</summary>
    public static void Export(Sequential model, IReadOnlyList<int> inputShape, Stream output) =>
        Build(model, inputShape).WriteTo(output);

    /// <summary>Writes the ONNX model to <paramref name="path"/> (a temporary file beside it, then renamed over it).</summary>
    public static void Export(Sequential model, IReadOnlyList<int> inputShape, string path)
    {
        var proto = Build(model, inputShape); // fails before anything is written
        MeProp.Training.AtomicFile.Write(path, proto.WriteTo);
    }

    /// <summary>The model as an ONNX ModelProto.</summary>
    internal static ModelProto Build(Sequential model, IReadOnlyList<int> inputShape)
    {
        if (inputShape.Count == 0 || inputShape.Any(d => d < 1))
            throw new ArgumentException($"onnx export: the input shape needs positive dimensions (C, H, W), got [{string.Join(", ", inputShape)}]");
        int[] exampleShape = [1, .. inputShape];
        int[] outputShape = model.OutputShape(exampleShape); // throws, naming the layer, when the shape does not fit
        if (outputShape.Length != 2)
            throw new ArgumentException($"onnx export: the model gives [{string.Join(", ", outputShape.Skip(1))}] per example, not a vector of class scores");

        var graph = new GraphBuilder();
        var (last, _) = graph.Chain(model.Layers, InputName, exampleShape);
        graph.Graph.Name = "meprop";
        graph.RenameFinal(last, OutputName);
        graph.Graph.Input.Add(ValueInfo(InputName, inputShape));
        graph.Graph.Output.Add(ValueInfo(OutputName, [outputShape[1]]));

        var proto = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "MeProp.NET",
            ProducerVersion = typeof(OnnxExporter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "",
            Graph = graph.Graph,
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        return proto;
    }

    /// <summary>A float32 tensor value [N, dims...] with a symbolic batch dimension N.</summary>
    private static ValueInfoProto ValueInfo(string name, IEnumerable<int> dims)
    {
        var shape = new TensorShapeProto();
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "N" });
        foreach (int d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }

    /// <summary>The graph being written: nodes in order, initializers, and the value names taken so far.</summary>
    private sealed class GraphBuilder
    {
        private readonly HashSet<string> _names = [InputName, OutputName];

        public GraphProto Graph { get; } = new();

        /// <summary>Emits the layers one after the other from value <paramref name="input"/> of shape <paramref name="shape"/> (batch 1); returns the last value and its shape.</summary>
        public (string Value, int[] Shape) Chain(IEnumerable<ILayer> layers, string input, int[] shape)
        {
            foreach (var layer in layers)
            {
                int[] next = layer.OutputShape(shape);
                input = Emit(layer, input, shape);
                shape = next;
            }
            return (input, shape);
        }

        /// <summary>The nodes of one layer; returns the name of its output value.</summary>
        private string Emit(ILayer layer, string input, int[] shape)
        {
            switch (layer)
            {
                case Conv2d conv:
                    return Node("Conv", conv.Name, [input, Weight(conv.Weight.Name, conv.Weight.Value.Span, conv.Weight.Value.Shape), Weight(conv.Bias.Name, conv.Bias.Value.Span, conv.Bias.Value.Shape)],
                        Ints("kernel_shape", conv.KernelSize, conv.KernelSize), Ints("strides", conv.Stride, conv.Stride),
                        Ints("pads", conv.Padding, conv.Padding, conv.Padding, conv.Padding), Ints("dilations", 1, 1), Int("group", 1));
                case Linear linear:
                    return Node("Gemm", linear.Name, [input, Weight(linear.Weight.Name, linear.Weight.Value.Span, linear.Weight.Value.Shape), Weight(linear.Bias.Name, linear.Bias.Value.Span, linear.Bias.Value.Shape)],
                        Int("transB", 1));
                case BatchNorm bn:
                    return Node("BatchNormalization", bn.Name,
                        [input, Weight(bn.Weight.Name, bn.Weight.Value.Span, bn.Weight.Value.Shape), Weight(bn.Bias.Name, bn.Bias.Value.Span, bn.Bias.Value.Shape),
                         Weight(bn.Name + ".running_mean", bn.RunningMean.Span, bn.RunningMean.Shape), Weight(bn.Name + ".running_var", bn.RunningVariance.Span, bn.RunningVariance.Shape)],
                        Float("epsilon", bn.Epsilon), Float("momentum", 1f - (bn.Momentum ?? 0.1f))); // read only by training runtimes; cumulative (null) has no ONNX form
                case Activation activation:
                    string op = activation.Kind switch
                    {
                        ActivationKind.Relu => "Relu",
                        ActivationKind.Sigmoid => "Sigmoid",
                        ActivationKind.Tanh => "Tanh",
                        _ => throw Unsupported(layer),
                    };
                    return Node(op, activation.Name, [input]);
                case MaxPool2d max:
                    return Node("MaxPool", max.Name, [input], Ints("kernel_shape", max.KernelSize, max.KernelSize), Ints("strides", max.Stride, max.Stride));
                case AvgPool2d avg:
                    return Node("AveragePool", avg.Name, [input], Ints("kernel_shape", avg.KernelSize, avg.KernelSize), Ints("strides", avg.Stride, avg.Stride));
                case GlobalAvgPool2d gap:
                    string pooled = Node("GlobalAveragePool", gap.Name + ".pool", [input]);
                    return Node("Flatten", gap.Name, [pooled], Int("axis", 1));
                case MeProp.Layers.Flatten flatten:
                    return Node("Flatten", flatten.Name, [input], Int("axis", 1));
                case Dropout:
                    return input;
                case Normalize normalize:
                    // [1, C, 1, ...] so that it broadcasts over the batch and the positions of x [N, C, ...].
                    long[] dims = [1, normalize.Mean.Length, .. Enumerable.Repeat(1L, shape.Length - 2)];
                    string centred = Node("Sub", normalize.Name + ".centred", [input, Weight(normalize.Name + ".mean", normalize.Mean, dims)]);
                    return Node("Div", normalize.Name, [centred, Weight(normalize.Name + ".std", normalize.Std, dims)]);
                case Residual residual:
                    var (body, _) = Chain(residual.Body, input, shape);
                    var (shortcut, _) = residual.IdentityShortcut ? (input, shape) : Chain(residual.Shortcut, input, shape);
                    return Node("Add", residual.Name, [body, shortcut]);
                default:
                    throw Unsupported(layer);
            }
        }

        private static ArgumentException Unsupported(ILayer layer) =>
            new($"onnx export: layer '{layer.Name}' ({layer.GetType().Name}{(layer is Activation a ? " " + a.Kind : "")}) has no ONNX mapping");

        /// <summary>Adds a node named <paramref name="name"/> whose one output is a new value of that name (made unique); returns the value's name.</summary>
        private string Node(string op, string name, string[] inputs, params AttributeProto[] attributes)
        {
            string output = Claim(name);
            var node = new NodeProto { OpType = op, Name = output };
            node.Input.AddRange(inputs);
            node.Output.Add(output);
            node.Attribute.AddRange(attributes);
            Graph.Node.Add(node);
            return output;
        }

        /// <summary>A float32 initializer named <paramref name="name"/> holding <paramref name="values"/> with shape <paramref name="dims"/>; returns its name.</summary>
        private string Weight(string name, ReadOnlySpan<float> values, ReadOnlySpan<int> dims)
        {
            long[] longDims = new long[dims.Length];
            for (int i = 0; i < dims.Length; i++) longDims[i] = dims[i];
            return Weight(name, values, longDims);
        }

        private string Weight(string name, ReadOnlySpan<float> values, long[] dims)
        {
            if (!_names.Add(name)) throw new ArgumentException($"onnx export: the name '{name}' is used twice in the graph");
            var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
            tensor.Dims.AddRange(dims);
            // raw_data is little-endian by the ONNX specification.
            if (BitConverter.IsLittleEndian) tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
            else tensor.FloatData.AddRange(values.ToArray());
            Graph.Initializer.Add(tensor);
            return name;
        }

        /// <summary><paramref name="name"/>, or name_2, name_3, … when it is taken.</summary>
        private string Claim(string name)
        {
            string candidate = name;
            for (int i = 2; !_names.Add(candidate); i++) candidate = $"{name}_{i}";
            return candidate;
        }

        /// <summary>Gives the graph's final value the output's name (an Identity node when the final value is the input itself).</summary>
        public void RenameFinal(string last, string outputName)
        {
            if (last == InputName)
            {
                var identity = new NodeProto { OpType = "Identity", Name = outputName };
                identity.Input.Add(last);
                identity.Output.Add(outputName);
                Graph.Node.Add(identity);
                return;
            }
            foreach (var node in Graph.Node)
            {
                for (int i = 0; i < node.Output.Count; i++) if (node.Output[i] == last) node.Output[i] = outputName;
                for (int i = 0; i < node.Input.Count; i++) if (node.Input[i] == last) node.Input[i] = outputName;
            }
        }

        private static AttributeProto Int(string name, long value) =>
            new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

        private static AttributeProto Float(string name, float value) =>
            new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

        private static AttributeProto Ints(string name, params long[] values)
        {
            var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
            attribute.Ints.AddRange(values);
            return attribute;
        }
    }
}
