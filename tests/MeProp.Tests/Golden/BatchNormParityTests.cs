using MeProp.Layers;
using MeProp.Tensors;

namespace MeProp.Tests.Golden;

/// <summary>
/// BatchNorm against PyTorch (BatchNorm2d on x [4, 3, 5, 5], BatchNorm1d on x [6, 5]): one training
/// Forward and Backward, the running statistics after it, then an inference Forward on x2.
/// </summary>
public class BatchNormParityTests
{
    /// <summary>float32 against PyTorch's float64 values: |ours - torch| &lt;= 1e-5 + 1e-4·|torch|.</summary>
    private const double Absolute = 1e-5, Relative = 1e-4;

    [Theory]
    [InlineData("batchnorm2d_train.json")]
    [InlineData("batchnorm1d_train.json")]
    [InlineData("batchnorm2d_1x1_train.json")]
    public void MatchesPyTorch(string fileName)
    {
        var f = GoldenFixture.Load(fileName);
        int[] shape = f.Shape("x");
        using var compute = new ComputeContext(2);
        var bn = new BatchNorm("bn", shape[1], compute, (float)f.Param("eps"), (float)f.Param("momentum"));
        f.Data("gamma").CopyTo(bn.Weight.Value.Span);
        f.Data("beta").CopyTo(bn.Bias.Value.Span);

        var y = bn.Forward(new Tensor(f.Data("x"), shape), training: true);
        Assert.Equal(shape, y.ShapeArray());
        TestData.AssertClose(f.Data("y"), y.Span, Absolute, Relative, $"{fileName} y");

        var dx = bn.Backward(new Tensor(f.Data("dy"), shape));
        Assert.NotNull(dx);
        TestData.AssertClose(f.Data("dx"), dx.Span, Absolute, Relative, $"{fileName} dx");
        TestData.AssertClose(f.Data("dgamma"), bn.Weight.Gradient.Span, Absolute, Relative, $"{fileName} dgamma");
        TestData.AssertClose(f.Data("dbeta"), bn.Bias.Gradient.Span, Absolute, Relative, $"{fileName} dbeta");
        TestData.AssertClose(f.Data("running_mean"), bn.RunningMean.Span, Absolute, Relative, $"{fileName} running_mean");
        TestData.AssertClose(f.Data("running_var"), bn.RunningVariance.Span, Absolute, Relative, $"{fileName} running_var");

        var yEval = bn.Forward(new Tensor(f.Data("x2"), f.Shape("x2")), training: false);
        TestData.AssertClose(f.Data("y_eval"), yEval.Span, Absolute, Relative, $"{fileName} y_eval");
    }
}
