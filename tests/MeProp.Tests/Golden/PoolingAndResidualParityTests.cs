using MeProp.Layers;
using MeProp.Tensors;
using static MeProp.Tests.Golden.LayerParityTests;

namespace MeProp.Tests.Golden;

/// <summary>
/// Average pooling, global average pooling and ResNet basic blocks against PyTorch's float64 results
/// (scripts/make_golden_fixtures.py), with <see cref="LayerParityTests"/>' tolerance
/// |ours - torch| &lt;= 1e-5 + 1e-4·|torch|. The blocks' parameters are loaded by their PyTorch names
/// ("block1.conv1.weight", "block1.shortcut.bn.bias"), so a name our checkpoints would write differently
/// fails here; BN runs in training mode, as the fixture's module did.
/// </summary>
public class PoolingAndResidualParityTests
{
    [Theory]
    [InlineData("avgpool2d_k2s2.json")]
    [InlineData("avgpool2d_k3s2_odd.json")]
    [InlineData("avgpool2d_k2s3.json")]
    public void AvgPool2d(string file)
    {
        var f = GoldenFixture.Load(file);
        Assert.Equal(0.0, f.Param("padding"));
        using var compute = new ComputeContext(2);
        var pool = new AvgPool2d("pool", (int)f.Param("kernel"), (int)f.Param("stride"), compute);
        AssertParity(f, "y", pool.Forward(Load(f, "x"), training: true));
        AssertParity(f, "dx", pool.Backward(Load(f, "dy")));
    }

    [Fact]
    public void GlobalAvgPool2d()
    {
        var f = GoldenFixture.Load("global_avgpool2d.json");
        using var compute = new ComputeContext(2);
        var pool = new GlobalAvgPool2d("gap", compute);
        AssertParity(f, "y", pool.Forward(Load(f, "x"), training: true));
        AssertParity(f, "dx", pool.Backward(Load(f, "dy")));
    }

    [Theory]
    [InlineData("residual_identity.json")]
    [InlineData("residual_downsample.json")]
    public void ResidualBlock(string file)
    {
        var f = GoldenFixture.Load(file);
        int[] xs = f.Shape("x");
        int inChannels = xs[1], outChannels = f.Shape("block1.conv1.weight")[0], stride = (int)f.Param("stride");
        float eps = (float)f.Param("eps"), momentum = (float)f.Param("momentum");
        using var compute = new ComputeContext(2);
        var rng = new Rng(1); // the initial weights are overwritten from the fixture
        ILayer[] body =
        [
            new Conv2d("block1.conv1", inChannels, outChannels, 3, stride, 1, compute, rng),
            new BatchNorm("block1.bn1", outChannels, compute, eps, momentum),
            new Activation("block1.relu", ActivationKind.Relu, compute),
            new Conv2d("block1.conv2", outChannels, outChannels, 3, 1, 1, compute, rng),
            new BatchNorm("block1.bn2", outChannels, compute, eps, momentum),
        ];
        ILayer[] shortcut = f.HasTensor("block1.shortcut.conv.weight")
            ?
            [
                new Conv2d("block1.shortcut.conv", inChannels, outChannels, 1, stride, 0, compute, rng),
                new BatchNorm("block1.shortcut.bn", outChannels, compute, eps, momentum),
            ]
            : [];
        var block = new Residual("block1", body, shortcut, compute);
        // Every parameter the PyTorch module has, in its named_parameters() order.
        Assert.Equal(f.TensorNames.Where(n => n.StartsWith("block1.", StringComparison.Ordinal) && !n.Contains(".running_")),
            block.Parameters.Select(p => p.Name));
        foreach (var p in block.Parameters)
        {
            Assert.Equal(f.Shape(p.Name), p.Value.ShapeArray());
            f.Data(p.Name).CopyTo(p.Value.Span);
        }

        AssertParity(f, "y", block.Forward(Load(f, "x"), training: true));
        AssertParity(f, "dx", block.Backward(Load(f, "dy")));
        // Each conv bias feeds a BN, which subtracts the batch mean: its exact gradient is 0, and ours is
        // the float32 sum of the N·OH·OW BN input gradients (|value| up to ~15, each off by up to ~1e-6)
        // that cancel, so it is held to 1e-6 per term instead of 1e-5 in all.
        int[] ys = f.Shape("y");
        double biasAbsolute = 1e-6 * ys[0] * ys[2] * ys[3];
        var convBiases = block.Children.OfType<Conv2d>().Select(c => c.Bias).ToHashSet();
        foreach (var p in block.Parameters)
        {
            if (convBiases.Contains(p))
                TestData.AssertClose(f.Data("grad." + p.Name), p.Gradient.Span, biasAbsolute, 0, $"{file} grad.{p.Name}");
            else AssertParity(f, "grad." + p.Name, p.Gradient);
        }
        foreach (var bn in block.Children.OfType<BatchNorm>())
        {
            AssertParity(f, bn.Name + ".running_mean", bn.RunningMean);
            AssertParity(f, bn.Name + ".running_var", bn.RunningVariance);
        }
    }
}
