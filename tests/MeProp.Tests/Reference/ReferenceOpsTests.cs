using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Tests.Golden;

namespace MeProp.Tests.Reference;

/// <summary>
/// The oracles themselves are checked: against PyTorch's float64 fixtures (to 1e-10, i.e. float64
/// round-off on sums of a few hundred terms) and on small hand-computed cases.
/// </summary>
public class ReferenceOpsTests
{
    private const double Float64Tolerance = 1e-10;

    [Theory]
    [InlineData("conv2d_s1_p2.json")]
    [InlineData("conv2d_s2_p1.json")]
    [InlineData("conv2d_s1_p0_odd.json")]
    public void Conv2d_MatchesPyTorchInFloat64(string file)
    {
        var f = GoldenFixture.Load(file);
        int[] xs = f.Shape("x"), ws = f.Shape("weight");
        var y = ReferenceOps.Conv2d(f.DataDouble("x"), xs[0], xs[1], xs[2], xs[3], f.DataDouble("weight"), f.DataDouble("bias"),
            ws[0], ws[2], (int)f.Param("stride"), (int)f.Param("padding"));
        TestData.AssertClose(f.DataDouble("y"), y, Float64Tolerance, Float64Tolerance, file);
    }

    [Fact]
    public void Conv2d_HandComputedStride2Padding1()
    {
        // x = 1..9 in a 3x3 image; w = [[1, 0], [0, -1]]; OH = (3 + 2 - 2) / 2 + 1 = 2.
        double[] x = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        var y = ReferenceOps.Conv2d(x, 1, 1, 3, 3, [1, 0, 0, -1], [0.5], 1, 2, 2, 1);
        // y[i, j] = b + x[2i-1, 2j-1] - x[2i, 2j] (x = 0 outside): (0,0) -> -x[0,0]; (0,1) -> -x[0,2];
        // (1,0) -> -x[2,0]; (1,1) -> x[1,1] - x[2,2].
        Assert.Equal([0.5 - 1, 0.5 - 3, 0.5 - 7, 0.5 + 5 - 9], y);
    }

    [Fact]
    public void Im2Col_TimesWeightsIsTheConvolution()
    {
        var rng = new Rng(11);
        int n = 2, c = 3, h = 5, w = 4, oc = 2, k = 3, s = 2, p = 1;
        var x = ReferenceOps.ToDouble(TestData.Uniform(rng, n * c * h * w));
        var weight = ReferenceOps.ToDouble(TestData.Uniform(rng, oc * c * k * k));
        var bias = ReferenceOps.ToDouble(TestData.Uniform(rng, oc));
        var y = ReferenceOps.Conv2d(x, n, c, h, w, weight, bias, oc, k, s, p);
        var cols = ReferenceOps.Im2Col(x, n, c, h, w, k, s, p);
        int oh = ReferenceOps.OutputSize(h, k, s, p), ow = ReferenceOps.OutputSize(w, k, s, p), patch = c * k * k;
        var fromCols = new double[y.Length];
        for (int b = 0; b < n; b++)
        for (int o = 0; o < oc; o++)
        for (int q = 0; q < oh * ow; q++)
            fromCols[(b * oc + o) * oh * ow + q] = bias[o] + ReferenceOps.Dot(
                cols.AsSpan((b * oh * ow + q) * patch, patch), weight.AsSpan(o * patch, patch));
        TestData.AssertClose(y, fromCols, Float64Tolerance, Float64Tolerance, "cols·W^T + b");
    }

    [Fact]
    public void Linear_MatchesPyTorchInFloat64()
    {
        var f = GoldenFixture.Load("linear.json");
        int[] xs = f.Shape("x"), ws = f.Shape("weight");
        var y = ReferenceOps.Linear(f.DataDouble("x"), xs[0], xs[1], f.DataDouble("weight"), f.DataDouble("bias"), ws[0]);
        TestData.AssertClose(f.DataDouble("y"), y, Float64Tolerance, Float64Tolerance, "linear");
    }

    [Theory]
    [InlineData("maxpool2d.json")]
    [InlineData("maxpool2d_odd.json")]
    public void MaxPool2d_MatchesPyTorchInFloat64(string file)
    {
        var f = GoldenFixture.Load(file);
        int[] xs = f.Shape("x");
        var (y, _) = ReferenceOps.MaxPool2d(f.DataDouble("x"), xs[0], xs[1], xs[2], xs[3], (int)f.Param("kernel"), (int)f.Param("stride"));
        Assert.Equal(f.DataDouble("y"), y);
    }

    [Fact]
    public void MaxPool2d_TiesGoToTheFirstMaximumInRowMajorWindowOrder()
    {
        // One 2x4 plane, two 2x2 windows: [1 1 | 0 3] / [1 1 | 3 3].
        double[] x = [1, 1, 0, 3, 1, 1, 3, 3];
        var (y, argmax) = ReferenceOps.MaxPool2d(x, 1, 1, 2, 4, 2, 2);
        Assert.Equal([1.0, 3.0], y);
        Assert.Equal([0, 3], argmax);
    }

    [Theory]
    [InlineData("relu.json", ActivationKind.Relu)]
    [InlineData("sigmoid.json", ActivationKind.Sigmoid)]
    [InlineData("tanh.json", ActivationKind.Tanh)]
    public void Activation_MatchesPyTorchInFloat64(string file, ActivationKind kind)
    {
        var f = GoldenFixture.Load(file);
        TestData.AssertClose(f.DataDouble("y"), ReferenceOps.Activation(kind, f.DataDouble("x")), 1e-15, 1e-14, file);
    }

    [Fact]
    public void SoftmaxCrossEntropy_MatchesPyTorchInFloat64()
    {
        var f = GoldenFixture.Load("softmax_cross_entropy.json");
        int[] shape = f.Shape("logits");
        int[] labels = Array.ConvertAll(f.DataDouble("labels"), v => (int)v);
        double loss = ReferenceOps.SoftmaxCrossEntropy(f.DataDouble("logits"), shape[0], shape[1], labels);
        Assert.Equal(f.DataDouble("loss")[0], loss, 1e-12);
    }

    [Fact]
    public void SoftmaxCrossEntropy_HandComputed()
    {
        // Two equal logits: loss = log 2 whichever label; a row [0, ln 3] with label 1: -log(3/4).
        double loss = ReferenceOps.SoftmaxCrossEntropy([5, 5, 0, Math.Log(3)], 2, 2, [0, 1]);
        Assert.Equal((Math.Log(2) - Math.Log(0.75)) / 2, loss, 1e-15);
    }

    [Fact]
    public void AdamStep_MatchesPyTorchInFloat64()
    {
        var f = GoldenFixture.Load("adam_steps.json");
        var p = f.DataDouble("p0");
        var m = new double[p.Length];
        var v = new double[p.Length];
        for (int t = 1; t <= 3; t++)
        {
            ReferenceOps.AdamStep(p, f.DataDouble($"g{t}"), m, v, t, f.Param("lr"), f.Param("beta1"), f.Param("beta2"), f.Param("eps"));
            TestData.AssertClose(f.DataDouble($"p{t}"), p, 1e-12, 1e-12, $"step {t}");
        }
    }

    [Fact]
    public void NumericGradient_OfAKnownFunction()
    {
        // L = v0² · v1 + sin(v2): gradient (2·v0·v1, v0², cos v2).
        double[] v = [0.7, -1.3, 0.4];
        var g = GradientCheck.Numeric(v, () => v[0] * v[0] * v[1] + Math.Sin(v[2]));
        TestData.AssertClose([2 * 0.7 * -1.3, 0.49, Math.Cos(0.4)], g, 1e-6, 0, "numeric gradient");
        Assert.Equal([0.7, -1.3, 0.4], v);
    }
}
