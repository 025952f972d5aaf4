using MeProp.Layers;
using MeProp.Tensors;

namespace MeProp.Tests.Golden;

/// <summary>
/// Our float32 layers against PyTorch's float64 results from the committed fixtures: weights are
/// copied in directly (conv [OC, IC, KH, KW], linear [Out, In] are PyTorch's layouts), then forward
/// and backward(dy). Tolerance: |ours - torch| &lt;= 1e-5 + 1e-4·|torch| (float32 rounding of the
/// inputs and of sums of up to ~300 products; a layout or index mistake is off by O(0.1)).
/// </summary>
public class LayerParityTests
{
    internal const double Absolute = 1e-5, Relative = 1e-4;

    internal static void AssertParity(GoldenFixture f, string name, Tensor? actual)
    {
        Assert.NotNull(actual);
        Assert.Equal(f.Shape(name), actual.ShapeArray());
        TestData.AssertClose(f.Data(name), actual.Span, Absolute, Relative, $"{f.FileName} {name}");
    }

    internal static Tensor Load(GoldenFixture f, string name) => new(f.Data(name), f.Shape(name));

    [Theory]
    [InlineData("conv2d_s1_p2.json")]
    [InlineData("conv2d_s2_p1.json")]
    [InlineData("conv2d_s1_p0_odd.json")]
    [InlineData("conv2d_k4_s2_p1.json")]
    [InlineData("conv2d_k2_s3_p0.json")]
    [InlineData("conv2d_k1_s2_p0.json")]
    public void Conv2d(string file)
    {
        var f = GoldenFixture.Load(file);
        int[] ws = f.Shape("weight");
        Assert.Equal(ws[2], ws[3]);
        using var compute = new ComputeContext(1);
        var conv = new Conv2d("conv", ws[1], ws[0], ws[2], (int)f.Param("stride"), (int)f.Param("padding"), compute, new Rng(1));
        f.Data("weight").CopyTo(conv.Weight.Value.Span);
        f.Data("bias").CopyTo(conv.Bias.Value.Span);
        AssertParity(f, "y", conv.Forward(Load(f, "x"), training: true));
        AssertParity(f, "dx", conv.Backward(Load(f, "dy")));
        AssertParity(f, "dweight", conv.Weight.Gradient);
        AssertParity(f, "dbias", conv.Bias.Gradient);
    }

    [Fact]
    public void Linear()
    {
        var f = GoldenFixture.Load("linear.json");
        int[] ws = f.Shape("weight");
        using var compute = new ComputeContext(1);
        var linear = new Linear("fc", ws[1], ws[0], compute, new Rng(1));
        f.Data("weight").CopyTo(linear.Weight.Value.Span);
        f.Data("bias").CopyTo(linear.Bias.Value.Span);
        AssertParity(f, "y", linear.Forward(Load(f, "x"), training: true));
        AssertParity(f, "dx", linear.Backward(Load(f, "dy")));
        AssertParity(f, "dweight", linear.Weight.Gradient);
        AssertParity(f, "dbias", linear.Bias.Gradient);
    }

    [Theory]
    [InlineData("maxpool2d.json")]
    [InlineData("maxpool2d_odd.json")]
    [InlineData("maxpool2d_k3s2.json")]
    [InlineData("maxpool2d_k2s1.json")]
    [InlineData("maxpool2d_wide.json")]
    public void MaxPool2d(string file)
    {
        var f = GoldenFixture.Load(file);
        Assert.Equal(0.0, f.Param("padding"));
        using var compute = new ComputeContext(1);
        var pool = new MaxPool2d("pool", (int)f.Param("kernel"), compute, (int)f.Param("stride"));
        AssertParity(f, "y", pool.Forward(Load(f, "x"), training: true));
        AssertParity(f, "dx", pool.Backward(Load(f, "dy")));
    }

    [Theory]
    [InlineData("relu.json", ActivationKind.Relu)]
    [InlineData("sigmoid.json", ActivationKind.Sigmoid)]
    [InlineData("tanh.json", ActivationKind.Tanh)]
    public void Activation(string file, ActivationKind kind)
    {
        var f = GoldenFixture.Load(file);
        var layer = new Activation("act", kind);
        AssertParity(f, "y", layer.Forward(Load(f, "x"), training: true));
        AssertParity(f, "dx", layer.Backward(Load(f, "dy")));
    }
}
