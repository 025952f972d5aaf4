using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Tests.Reference;
using static MeProp.Tests.Layers.LayerTestSupport;

namespace MeProp.Tests.Layers;

/// <summary>
/// Each activation kind against the float64 reference and central differences, on any shape.
/// Inputs lie in ±[0.05, 3] (clear of ReLU's kink, into sigmoid's and tanh's flat tails).
/// Tolerance: <see cref="GradientCheck.Absolute"/> + <see cref="GradientCheck.Relative"/>·|oracle|.
/// </summary>
public class ActivationTests
{
    public static TheoryData<ActivationKind, int[]> Cases()
    {
        var data = new TheoryData<ActivationKind, int[]>();
        foreach (var kind in Enum.GetValues<ActivationKind>())
        {
            data.Add(kind, [1, 7]);
            data.Add(kind, [3, 2, 5, 3]);
            data.Add(kind, [3, 37]); // longer than a SIMD vector, with a tail
        }
        return data;
    }

    private static Tensor Input(Rng rng, int[] shape)
    {
        var x = GradientCheck.AwayFromZero(rng, 0.05, shape);
        for (int i = 0; i < x.Length; i++) x.Span[i] *= 3;
        x.Span[0] = 0.05f; // always one value close to the kink
        return x;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardAndBackward_MatchReferenceAndFiniteDifferences(ActivationKind kind, int[] shape)
    {
        var rng = new Rng(Seed([(int)kind, .. shape]));
        var layer = new Activation("act", kind);
        var x = Input(rng, shape);
        var y = layer.Forward(x, true);
        Assert.Equal(shape, y.ShapeArray());
        var xd = ReferenceOps.ToDouble(x.Span);
        GradientCheck.AssertMatches(ReferenceOps.Activation(kind, xd), y.Span, "y");

        var r = TestData.UniformTensor(rng, shape);
        var dx = layer.Backward(r);
        Assert.NotNull(dx);
        Assert.Equal(shape, dx.ShapeArray());
        var rd = ReferenceOps.ToDouble(r.Span);
        var numeric = GradientCheck.Numeric(xd, () => ReferenceOps.Dot(rd, ReferenceOps.Activation(kind, xd)));
        GradientCheck.AssertMatches(numeric, dx.Span, "dx");
    }

    [Fact]
    public void Relu_PassesNoGradientThroughZeroOrNegativeInputs()
    {
        var layer = new Activation("act", ActivationKind.Relu);
        layer.Forward(new Tensor([-2f, 0f, 3f, -0f], 1, 4), true);
        var dx = layer.Backward(new Tensor([1f, 1f, 1f, 1f], 1, 4))!;
        Assert.Equal([0f, 0f, 1f, 0f], dx.Span.ToArray());
    }

    [Theory]
    [InlineData(1, 65536)]
    [InlineData(2, 70001)]
    [InlineData(3, 250887)]
    public void Relu_SplitOverThreads_MatchesTheDefinitionExactly(int threads, int length)
    {
        // Long enough to be split over the pool (odd lengths: runs of whole lines and a short last one).
        var rng = new Rng((ulong)(threads * 1_000_003 + length));
        using var compute = new ComputeContext(threads);
        var layer = new Activation("act", ActivationKind.Relu, compute);
        var x = TestData.UniformTensor(rng, [length]);
        var y = layer.Forward(x, true).Span.ToArray();
        var dy = TestData.UniformTensor(rng, [length]);
        var dx = layer.Backward(dy)!.Span.ToArray();
        for (int i = 0; i < length; i++)
        {
            Assert.Equal(Math.Max(x.Span[i], 0f), y[i]);
            Assert.Equal(y[i] > 0 ? dy.Span[i] : 0f, dx[i]);
        }
    }

    [Theory]
    [InlineData(ActivationKind.Relu)]
    [InlineData(ActivationKind.Sigmoid)]
    [InlineData(ActivationKind.Tanh)]
    public void WithoutInputGradient_ReturnsNull(ActivationKind kind)
    {
        var layer = new Activation("act", kind) { ComputeInputGradient = false };
        layer.Forward(new Tensor(2, 3), true);
        Assert.Null(layer.Backward(new Tensor(2, 3)));
        Assert.Empty(layer.Parameters);
    }

    [Fact]
    public void Backward_RejectsAGradientOfAnotherShape()
    {
        var layer = new Activation("act", ActivationKind.Tanh);
        layer.Forward(new Tensor(2, 3), true);
        Assert.Throws<ArgumentException>(() => layer.Backward(new Tensor(3, 2)));
    }
}
