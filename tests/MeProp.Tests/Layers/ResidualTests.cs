using MeProp.Layers;
using MeProp.Models;
using MeProp.Tensors;
using MeProp.Tests.Reference;
using static MeProp.Tests.Layers.LayerTestSupport;

namespace MeProp.Tests.Layers;

/// <summary>
/// Residual blocks as a ResNet builds them: body conv3x3 (stride S, padding 1) -> BN -> ReLU -> conv3x3
/// (padding 1) -> BN, shortcut the identity (S = 1, same channels) or conv1x1 (stride S) -> BN; every BN
/// in training mode. Checked against a float64 reference by finite differences, then child order,
/// shape errors, ComputeInputGradient and allocation.
/// Legend: x [N, C, H, W], y [N, OC, OH, OW], r = dL/dy for L = Σ r·y.
/// </summary>
public class ResidualTests
{
    private const float BatchNormEpsilon = 1e-5f;

    /// <summary>
    /// No pre-ReLU value of the reference lies closer than this to zero. A step of
    /// <see cref="GradientCheck.Step"/> in one input or parameter moves a pre-ReLU value by at most about
    /// the step (weights and inputs are within 1, BN divides by a batch std near 2, and a value near zero
    /// has |xhat| &lt;= |beta/gamma| &lt;= 1), so every central difference stays on one side of the kink.
    /// </summary>
    private const double KinkGap = 5e-3;

    private sealed record Geometry(int N, int InChannels, int OutChannels, int H, int W, int Stride, bool Identity)
    {
        // A 3x3 kernel with padding 1 and a 1x1 kernel without padding give the same output size.
        public int OH => (H - 1) / Stride + 1;
        public int OW => (W - 1) / Stride + 1;
        public int[] InputShape => [N, InChannels, H, W];
        public int[] OutputShape => [N, OutChannels, OH, OW];
    }

    private static readonly Geometry IdentityBlock = new(2, 4, 4, 5, 5, 1, Identity: true);
    private static readonly Geometry DownsamplingBlock = new(2, 3, 4, 8, 7, 2, Identity: false);

    private static Geometry Pick(bool identity) => identity ? IdentityBlock : DownsamplingBlock;

    /// <summary>
    /// The block, named as a ResNet's first block ("block1.conv1", "block1.shortcut.conv"), with O(1)
    /// conv weights and biases, BN gamma in [0.5, 1.5] and beta in [-0.5, 0.5], so a missing factor shows.
    /// </summary>
    private static Residual MakeBlock(Geometry g, ComputeContext compute, Rng rng)
    {
        ILayer[] body =
        [
            new Conv2d("block1.conv1", g.InChannels, g.OutChannels, 3, g.Stride, 1, compute, rng),
            new BatchNorm("block1.bn1", g.OutChannels, compute, BatchNormEpsilon),
            new Activation("block1.relu", ActivationKind.Relu, compute),
            new Conv2d("block1.conv2", g.OutChannels, g.OutChannels, 3, 1, 1, compute, rng),
            new BatchNorm("block1.bn2", g.OutChannels, compute, BatchNormEpsilon),
        ];
        ILayer[] shortcut = g.Identity ? [] :
        [
            new Conv2d("block1.shortcut.conv", g.InChannels, g.OutChannels, 1, g.Stride, 0, compute, rng),
            new BatchNorm("block1.shortcut.bn", g.OutChannels, compute, BatchNormEpsilon),
        ];
        var block = new Residual("block1", body, shortcut, compute);
        foreach (var layer in block.Children)
        {
            if (layer is Conv2d conv)
            {
                Randomize(conv.Weight, rng);
                Randomize(conv.Bias, rng);
            }
            else if (layer is BatchNorm bn)
            {
                for (int c = 0; c < bn.Features; c++)
                {
                    bn.Weight.Value.Span[c] = rng.NextUniform(0.5f, 1.5f);
                    bn.Bias.Value.Span[c] = rng.NextUniform(-0.5f, 0.5f);
                }
            }
        }
        return block;
    }

    /// <summary>The block in float64; <paramref name="p"/> holds the parameters in <see cref="Residual.Parameters"/> order.</summary>
    private static double[] ReferenceForward(Geometry g, double[] x, double[][] p, out double[] preRelu)
    {
        int plane = g.OH * g.OW;
        var h1 = ReferenceOps.Conv2d(x, g.N, g.InChannels, g.H, g.W, p[0], p[1], g.OutChannels, 3, g.Stride, 1);
        preRelu = ReferenceOps.BatchNormTraining(h1, p[2], p[3], g.N, g.OutChannels, plane, BatchNormEpsilon);
        var a1 = ReferenceOps.Activation(ActivationKind.Relu, preRelu);
        var h2 = ReferenceOps.Conv2d(a1, g.N, g.OutChannels, g.OH, g.OW, p[4], p[5], g.OutChannels, 3, 1, 1);
        var y = ReferenceOps.BatchNormTraining(h2, p[6], p[7], g.N, g.OutChannels, plane, BatchNormEpsilon);
        var shortcut = g.Identity
            ? x
            : ReferenceOps.BatchNormTraining(ReferenceOps.Conv2d(x, g.N, g.InChannels, g.H, g.W, p[8], p[9], g.OutChannels, 1, g.Stride, 0),
                p[10], p[11], g.N, g.OutChannels, plane, BatchNormEpsilon);
        for (int i = 0; i < y.Length; i++) y[i] += shortcut[i];
        return y;
    }

    /// <summary>A block and input whose reference keeps every pre-ReLU value <see cref="KinkGap"/> from zero: the first such draw from seeds 1, 2, ...</summary>
    private static (Residual Block, Tensor X, Rng Rng) DrawClearOfTheKink(Geometry g, ComputeContext compute)
    {
        for (ulong seed = 1; seed <= 100; seed++)
        {
            var rng = new Rng(seed);
            var block = MakeBlock(g, compute, rng);
            var x = TestData.UniformTensor(rng, g.InputShape);
            ReferenceForward(g, ReferenceOps.ToDouble(x.Span), ParameterValues(block), out var preRelu);
            if (preRelu.All(v => Math.Abs(v) >= KinkGap)) return (block, x, rng);
        }
        throw new InvalidOperationException("no seed up to 100 keeps the pre-ReLU values clear of zero");
    }

    private static double[][] ParameterValues(Residual block) =>
        block.Parameters.Select(p => ReferenceOps.ToDouble(p.Value.Span)).ToArray();

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ForwardAndBackward_MatchReferenceAndFiniteDifferences(bool identity)
    {
        var g = Pick(identity);
        using var compute = new ComputeContext(2);
        var (block, x, rng) = DrawClearOfTheKink(g, compute);
        var xd = ReferenceOps.ToDouble(x.Span);
        var p = ParameterValues(block);

        var y = block.Forward(x, training: true);
        Assert.Equal(g.OutputShape, y.ShapeArray());
        Assert.Equal(g.OutputShape, block.OutputShape(g.InputShape));
        GradientCheck.AssertMatches(ReferenceForward(g, xd, p, out _), y.Span, "y");

        var r = TestData.UniformTensor(rng, g.OutputShape);
        var dx = block.Backward(r);
        Assert.NotNull(dx);
        Assert.Equal(g.InputShape, dx.ShapeArray());
        var rd = ReferenceOps.ToDouble(r.Span);
        double Loss() => ReferenceOps.Dot(rd, ReferenceForward(g, xd, p, out _));
        GradientCheck.AssertMatches(GradientCheck.Numeric(xd, Loss), dx.Span, "dx");
        for (int i = 0; i < p.Length; i++)
            GradientCheck.AssertMatches(GradientCheck.Numeric(p[i], Loss), block.Parameters[i].Gradient.Span, "d" + block.Parameters[i].Name);
    }

    [Fact]
    public void ChildrenAndParameters_AreTheBodyThenTheShortcut_AndTheModelReachesThem()
    {
        using var compute = new ComputeContext(1);
        var block = MakeBlock(DownsamplingBlock, compute, new Rng(1));
        string[] children = ["block1.conv1", "block1.bn1", "block1.relu", "block1.conv2", "block1.bn2", "block1.shortcut.conv", "block1.shortcut.bn"];
        Assert.Equal(children, block.Children.Select(l => l.Name));
        Assert.Equal(
            ["block1.conv1.weight", "block1.conv1.bias", "block1.bn1.weight", "block1.bn1.bias",
             "block1.conv2.weight", "block1.conv2.bias", "block1.bn2.weight", "block1.bn2.bias",
             "block1.shortcut.conv.weight", "block1.shortcut.conv.bias", "block1.shortcut.bn.weight", "block1.shortcut.bn.bias"],
            block.Parameters.Select(p => p.Name));
        Assert.False(block.IdentityShortcut);
        // Per-layer state lives in the children, which the model walks; the block has none of its own.
        Assert.IsNotAssignableFrom<IStatefulLayer>(block);
        Assert.IsNotAssignableFrom<IMePropLayer>(block);

        var model = new Sequential([block]);
        Assert.Equal(["block1", .. children], model.AllLayers.Select(l => l.Name));
        Assert.Equal(block.Parameters, model.Parameters);
        Assert.False(block.Children[0].ComputeInputGradient); // the model's first layer: no dx
    }

    [Fact]
    public void MismatchedShapes_AreRejectedNamingTheBlockAndBothShapes()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(2);
        // Identity shortcut, but the body changes the channel count.
        var widening = new Residual("block2", [new Conv2d("block2.conv", 3, 4, 3, 1, 1, compute, rng)], [], compute);
        var error = Assert.Throws<ArgumentException>(() => widening.OutputShape([2, 3, 8, 8]));
        Assert.Contains("block2", error.Message);
        Assert.Contains("[2, 4, 8, 8]", error.Message);
        Assert.Contains("[2, 3, 8, 8]", error.Message);
        error = Assert.Throws<ArgumentException>(() => widening.Forward(new Tensor(2, 3, 8, 8), true));
        Assert.Contains("[2, 4, 8, 8]", error.Message);
        Assert.Contains("[2, 3, 8, 8]", error.Message);

        // A shortcut that forgets the stride.
        var strided = new Residual("block3",
            [new Conv2d("block3.conv", 3, 4, 3, 2, 1, compute, rng)],
            [new Conv2d("block3.shortcut.conv", 3, 4, 1, 1, 0, compute, rng)], compute);
        error = Assert.Throws<ArgumentException>(() => strided.OutputShape([2, 3, 8, 8]));
        Assert.Contains("block3", error.Message);
        Assert.Contains("[2, 4, 4, 4]", error.Message);
        Assert.Contains("[2, 4, 8, 8]", error.Message);
    }

    [Fact]
    public void RejectsAnEmptyBodyAChildWithoutTheBlockPrefixAndAWrongGradientShape()
    {
        using var compute = new ComputeContext(1);
        Assert.Throws<ArgumentException>(() => new Residual("block1", [], [], compute));
        var error = Assert.Throws<ArgumentException>(() => new Residual("block1", [new Activation("relu", ActivationKind.Relu)], [], compute));
        Assert.Contains("'relu'", error.Message);
        var block = new Residual("block1", [new Activation("block1.relu", ActivationKind.Relu)], [], compute);
        block.Forward(new Tensor(1, 2, 3, 3), true);
        Assert.Throws<ArgumentException>(() => block.Backward(new Tensor(1, 2, 3, 4)));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WithoutInputGradient_ReturnsNullAndStillAccumulatesParameterGradients(bool identity)
    {
        var g = Pick(identity);
        using var compute = new ComputeContext(2);
        var full = MakeBlock(g, compute, new Rng(5));
        var noDx = MakeBlock(g, compute, new Rng(5));
        noDx.ComputeInputGradient = false;
        int shortcutStart = 5;
        for (int i = 0; i < noDx.Children.Count; i++)
            Assert.Equal(i != 0 && i != shortcutStart, noDx.Children[i].ComputeInputGradient);

        var rng = new Rng(6);
        var x = TestData.UniformTensor(rng, g.InputShape);
        var r = TestData.UniformTensor(rng, g.OutputShape);
        full.Forward(x, true);
        Assert.NotNull(full.Backward(r));
        noDx.Forward(x, true);
        Assert.Null(noDx.Backward(r));
        for (int i = 0; i < full.Parameters.Count; i++)
            Assert.Equal(Gradient(full.Parameters[i]), Gradient(noDx.Parameters[i]));

        noDx.ComputeInputGradient = true;
        Assert.All(noDx.Children, l => Assert.True(l.ComputeInputGradient));
        noDx.Forward(x, true);
        Assert.NotNull(noDx.Backward(r));
    }

    [Fact]
    public void LargeSums_SplitOverThreads_AreExactAndTheSameForAnyThreadCount()
    {
        // 3·151·149 = 67,497 values: above the size split over threads, and not a multiple of 16.
        int[] shape = [1, 3, 151, 149];
        var rng = new Rng(7);
        var x = TestData.UniformTensor(rng, shape);
        var dy = TestData.UniformTensor(rng, shape);
        var expectedY = new float[x.Length];
        var expectedDx = new float[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            expectedY[i] = MathF.Max(x.Span[i], 0f) + x.Span[i];
            expectedDx[i] = (x.Span[i] > 0f ? dy.Span[i] : 0f) + dy.Span[i];
        }
        foreach (int threads in new[] { 1, 3 })
        {
            using var compute = new ComputeContext(threads);
            var block = new Residual("res", [new Activation("res.relu", ActivationKind.Relu, compute)], [], compute);
            Assert.True(block.IdentityShortcut);
            Assert.Equal(expectedY, Copy(block.Forward(x, true)));
            Assert.Equal(expectedDx, Copy(block.Backward(dy)!));
        }
    }

    [Fact]
    public void WarmSteps_AllocateNothing()
    {
        using var compute = new ComputeContext(2);
        var block = MakeBlock(DownsamplingBlock, compute, new Rng(8));
        var rng = new Rng(9);
        var x = TestData.UniformTensor(rng, DownsamplingBlock.InputShape);
        var r = TestData.UniformTensor(rng, DownsamplingBlock.OutputShape);
        void Step()
        {
            block.Forward(x, true);
            block.Backward(r);
        }
        // With pauses, so the pool's one-time sleep and wake-up paths are taken before the measurement.
        WarmUp.Run(Step);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"allocated {allocated} bytes in 10 warm steps");
    }
}
