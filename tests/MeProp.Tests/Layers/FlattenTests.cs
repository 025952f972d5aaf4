using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Tests.Reference;

namespace MeProp.Tests.Layers;

/// <summary>Flatten keeps (C, H, W) row-major order forward and restores the input shape backward.</summary>
public class FlattenTests
{
    [Theory]
    [InlineData(new[] { 1, 3, 5, 2 })]
    [InlineData(new[] { 3, 2, 7, 5 })]
    [InlineData(new[] { 3, 11 })]
    public void ForwardAndBackward_AreReshapesAndMatchFiniteDifferences(int[] shape)
    {
        var rng = new Rng(51);
        var flatten = new Flatten("flatten");
        var x = TestData.UniformTensor(rng, shape);
        var y = flatten.Forward(x, true);
        int features = shape.Skip(1).Aggregate(1, (a, b) => a * b);
        Assert.Equal([shape[0], features], y.ShapeArray());
        Assert.Equal(x.Span.ToArray(), y.Span.ToArray());
        Assert.Equal([shape[0], features], flatten.OutputShape(shape));

        var r = TestData.UniformTensor(rng, shape[0], features);
        var dx = flatten.Backward(r);
        Assert.NotNull(dx);
        Assert.Equal(shape, dx.ShapeArray());
        // L = Σ r·flatten(x): the reference forward of flatten is the identity on the flat data.
        var xd = ReferenceOps.ToDouble(x.Span);
        var rd = ReferenceOps.ToDouble(r.Span);
        GradientCheck.AssertMatches(GradientCheck.Numeric(xd, () => ReferenceOps.Dot(rd, xd)), dx.Span, "dx");
    }

    [Fact]
    public void ElementOrderIsChannelRowColumn()
    {
        // x[0, c, h, w] = 100c + 10h + w: flattened index c*H*W + h*W + w.
        var x = new Tensor(1, 2, 3, 4);
        for (int c = 0; c < 2; c++) for (int h = 0; h < 3; h++) for (int w = 0; w < 4; w++)
            x.Span[(c * 3 + h) * 4 + w] = 100 * c + 10 * h + w;
        var y = new Flatten("flatten").Forward(x, true);
        Assert.Equal(123f, y.Span[1 * 12 + 2 * 4 + 3]);
        Assert.Equal(10f, y.Span[4]);
    }

    [Fact]
    public void FollowsABatchSizeChange()
    {
        var flatten = new Flatten("flatten");
        flatten.Forward(new Tensor(4, 2, 3), true);
        var y = flatten.Forward(new Tensor(2, 2, 3), true);
        Assert.Equal([2, 6], y.ShapeArray());
        var dx = flatten.Backward(new Tensor(2, 6))!;
        Assert.Equal([2, 2, 3], dx.ShapeArray());
    }

    [Fact]
    public void WithoutInputGradient_ReturnsNull()
    {
        var flatten = new Flatten("flatten") { ComputeInputGradient = false };
        flatten.Forward(new Tensor(2, 3, 4), true);
        Assert.Null(flatten.Backward(new Tensor(2, 12)));
    }
}
