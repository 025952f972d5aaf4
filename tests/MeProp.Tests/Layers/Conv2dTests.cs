using MeProp.Kernels;
using MeProp.Layers;
using MeProp.Sparsity;
using MeProp.Tensors;
using MeProp.Tests.Reference;
using MeProp.Threading;
using static MeProp.Tests.Layers.LayerTestSupport;

namespace MeProp.Tests.Layers;

/// <summary>
/// Conv2d against the direct float64 convolution: forward values, and dx, dW, db against central
/// differences of L = Σ r·y. Tolerance: <see cref="GradientCheck.Absolute"/> + <see cref="GradientCheck.Relative"/>·|oracle|.
/// </summary>
public class Conv2dTests
{
    /// <summary>n, c, h, w, outChannels, kernel, stride, padding: odd and non-square sizes, stride 1 and 2, padding 0, 1, 2, batch 1 and 3.</summary>
    public static TheoryData<int, int, int, int, int, int, int, int> Cases => new()
    {
        { 1, 1, 5, 5, 2, 3, 1, 0 },
        { 3, 2, 7, 5, 3, 3, 2, 1 },
        { 1, 3, 6, 9, 2, 5, 1, 2 },
        { 3, 2, 8, 7, 4, 3, 2, 0 },  // (8 - 3) / 2 leaves a row and a column unused (floor)
        { 3, 1, 5, 4, 3, 2, 2, 2 },  // even kernel, padding as wide as the kernel
        { 1, 2, 4, 6, 1, 1, 2, 1 },  // 1x1 kernel: border outputs see only padding
        { 3, 3, 9, 7, 2, 5, 2, 2 },
        { 1, 2, 3, 11, 3, 3, 1, 1 },
    };

    private static (Conv2d Conv, Tensor X) Make(ComputeContext compute, Rng rng, int n, int c, int h, int w, int oc, int k, int s, int p)
    {
        var conv = new Conv2d("conv", c, oc, k, s, p, compute, rng);
        Randomize(conv.Weight, rng);
        Randomize(conv.Bias, rng);
        return (conv, TestData.UniformTensor(rng, n, c, h, w));
    }

    /// <summary>The float64 convolution of x by the layer's current weight and bias.</summary>
    private static double[] DirectConvolution(Conv2d conv, Tensor x) =>
        ReferenceOps.Conv2d(ReferenceOps.ToDouble(x.Span), x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3),
            ReferenceOps.ToDouble(conv.Weight.Value.Span), ReferenceOps.ToDouble(conv.Bias.Value.Span),
            conv.OutChannels, conv.KernelSize, conv.Stride, conv.Padding);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Forward_MatchesDirectConvolution(int n, int c, int h, int w, int oc, int k, int s, int p)
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(Seed(n, c, h, w, oc, k, s, p));
        var (conv, x) = Make(compute, rng, n, c, h, w, oc, k, s, p);
        var y = conv.Forward(x, training: true);
        int oh = ReferenceOps.OutputSize(h, k, s, p), ow = ReferenceOps.OutputSize(w, k, s, p);
        Assert.Equal([n, oc, oh, ow], y.ShapeArray());
        Assert.Equal([n, oc, oh, ow], conv.OutputShape([n, c, h, w]));
        GradientCheck.AssertMatches(DirectConvolution(conv, x), y.Span, "y");
    }

    /// <summary>Cases of the image-by-image forward: the ones above, and wider inputs (C >= 16, batches larger than the pool).</summary>
    public static TheoryData<int, int, int, int, int, int, int, int> ImageByImageCases
    {
        get
        {
            var cases = new TheoryData<int, int, int, int, int, int, int, int>();
            foreach (var row in Cases) cases.Add((int)row[0], (int)row[1], (int)row[2], (int)row[3], (int)row[4], (int)row[5], (int)row[6], (int)row[7]);
            cases.Add(3, 17, 7, 6, 5, 3, 2, 1);
            cases.Add(5, 32, 6, 6, 4, 5, 1, 2);
            cases.Add(4, 16, 9, 5, 33, 3, 1, 0);
            return cases;
        }
    }

    /// <summary>
    /// Evaluation, and training with meProp on a layer of 16 or more input channels, keep no patches for
    /// a backward and run image by image (channels-last patches, two workers): the same convolution.
    /// </summary>
    [Theory]
    [MemberData(nameof(ImageByImageCases))]
    public void ImageByImageForward_MatchesDirectConvolution(int n, int c, int h, int w, int oc, int k, int s, int p)
    {
        using var compute = new ComputeContext(2);
        var rng = new Rng(Seed(n, c, h, w, oc, k, s, p) + 7);
        var (conv, x) = Make(compute, rng, n, c, h, w, oc, k, s, p);
        var expected = DirectConvolution(conv, x);
        GradientCheck.AssertMatches(expected, conv.Forward(x, training: false).Span, "y (evaluation)");
        var error = Assert.Throws<InvalidOperationException>(() => conv.Backward(new Tensor(conv.OutputShape(x.Shape))));
        Assert.Contains("training Forward", error.Message);
        conv.Sparsifier = new GradientSparsifier("conv", new MePropOptions { Ratio = 0.5 }, convolutional: true, seed: 1);
        GradientCheck.AssertMatches(expected, conv.Forward(x, training: true).Span, "y (training with meProp)");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Backward_MatchesFiniteDifferences(int n, int c, int h, int w, int oc, int k, int s, int p)
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(Seed(n, c, h, w, oc, k, s, p) + 1);
        var (conv, x) = Make(compute, rng, n, c, h, w, oc, k, s, p);
        var y = conv.Forward(x, training: true);
        var r = TestData.UniformTensor(rng, y.ShapeArray());
        var dx = conv.Backward(r);
        Assert.NotNull(dx);
        Assert.Equal([n, c, h, w], dx.ShapeArray());

        double[] xd = ReferenceOps.ToDouble(x.Span), wd = ReferenceOps.ToDouble(conv.Weight.Value.Span),
            bd = ReferenceOps.ToDouble(conv.Bias.Value.Span), rd = ReferenceOps.ToDouble(r.Span);
        double Loss() => ReferenceOps.Dot(rd, ReferenceOps.Conv2d(xd, n, c, h, w, wd, bd, oc, k, s, p));
        GradientCheck.AssertMatches(GradientCheck.Numeric(xd, Loss), dx.Span, "dx");
        GradientCheck.AssertMatches(GradientCheck.Numeric(wd, Loss), conv.Weight.Gradient.Span, "dW");
        GradientCheck.AssertMatches(GradientCheck.Numeric(bd, Loss), conv.Bias.Gradient.Span, "db");
    }

    [Fact]
    public void Backward_AddsIntoParameterGradients()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(21);
        var (conv, x) = Make(compute, rng, 3, 2, 7, 6, 3, 3, 2, 1);
        var r = TestData.UniformTensor(rng, conv.OutputShape(x.Shape));
        conv.Forward(x, true);
        conv.Backward(r);
        float[] dW1 = Gradient(conv.Weight), db1 = Gradient(conv.Bias);
        Assert.Contains(dW1, v => v != 0);
        conv.Forward(x, true);
        conv.Backward(r);
        TestData.AssertClose(dW1.Select(v => 2 * v).ToArray(), conv.Weight.Gradient.Span, 1e-6, 1e-6, "dW after two backwards");
        TestData.AssertClose(db1.Select(v => 2 * v).ToArray(), conv.Bias.Gradient.Span, 1e-6, 1e-6, "db after two backwards");
    }

    [Fact]
    public void Backward_WithoutItsOwnForward_Throws()
    {
        // Backward overwrites the saved patches with dcols, so a second Backward would form dW from
        // the wrong matrix; it must refuse rather than return wrong gradients (needs commit 79b34c4).
        using var compute = new ComputeContext(1);
        var rng = new Rng(24);
        var (conv, x) = Make(compute, rng, 2, 2, 5, 5, 3, 3, 1, 1);
        var r = TestData.UniformTensor(rng, conv.OutputShape(x.Shape));
        Assert.Throws<InvalidOperationException>(() => conv.Backward(r));
        conv.Forward(x, true);
        conv.Backward(r);
        Assert.Throws<InvalidOperationException>(() => conv.Backward(r));

        // Without dx the patches survive, so repeated backwards keep adding the same dW.
        conv.ComputeInputGradient = false;
        conv.Weight.Gradient.Clear();
        conv.Forward(x, true);
        conv.Backward(r);
        var once = Gradient(conv.Weight);
        conv.Backward(r);
        TestData.AssertClose(once.Select(v => 2 * v).ToArray(), conv.Weight.Gradient.Span, 1e-6, 1e-6, "dW after two backwards without dx");
    }

    [Fact]
    public void Backward_RefusesWhenMePropWasSwitchedAfterTheForward()
    {
        // A dense forward keeps im2col rows, a meProp one the padded channels-last input: a backward of
        // the other kind would read the other buffer, stale, and return wrong gradients.
        using var compute = new ComputeContext(1);
        var rng = new Rng(25);
        var (conv, x) = Make(compute, rng, 2, 3, 6, 5, 4, 3, 1, 1);
        var r = TestData.UniformTensor(rng, conv.OutputShape(x.Shape));
        conv.Forward(x, true);
        conv.Sparsifier = new GradientSparsifier("conv", new MePropOptions { Ratio = 0.5 }, convolutional: true, seed: 1);
        Assert.Throws<InvalidOperationException>(() => conv.Backward(r));
        conv.Forward(x, true);
        conv.Backward(r);
        conv.Forward(x, true);
        conv.Sparsifier = null;
        Assert.Throws<InvalidOperationException>(() => conv.Backward(r));
    }

    [Fact]
    public void WithoutInputGradient_ReturnsNullAndTheSameParameterGradients()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(22);
        var (conv, x) = Make(compute, rng, 3, 2, 7, 6, 3, 3, 1, 1);
        var r = TestData.UniformTensor(rng, conv.OutputShape(x.Shape));
        conv.Forward(x, true);
        Assert.NotNull(conv.Backward(r));
        float[] dW = Gradient(conv.Weight), db = Gradient(conv.Bias);
        conv.Weight.Gradient.Clear();
        conv.Bias.Gradient.Clear();

        conv.ComputeInputGradient = false;
        conv.Forward(x, true);
        Assert.Null(conv.Backward(r));
        Assert.Equal(dW, Gradient(conv.Weight));
        Assert.Equal(db, Gradient(conv.Bias));
    }

    [Fact]
    public void ResultsAreIdenticalWithOneAndThreeThreads()
    {
        float[]? y1 = null, dx1 = null, dW1 = null, db1 = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var compute = new ComputeContext(threads);
            var rng = new Rng(23);
            var (conv, x) = Make(compute, rng, 5, 3, 11, 10, 6, 3, 1, 1);
            var y = Copy(conv.Forward(x, true));
            var dx = Copy(conv.Backward(TestData.UniformTensor(rng, conv.OutputShape(x.Shape)))!);
            if (y1 is null) (y1, dx1, dW1, db1) = (y, dx, Gradient(conv.Weight), Gradient(conv.Bias));
            else
            {
                Assert.Equal(y1, y);
                Assert.Equal(dx1, dx);
                Assert.Equal(dW1, Gradient(conv.Weight));
                Assert.Equal(db1, Gradient(conv.Bias));
            }
        }
    }

    [Fact]
    public void RejectsWrongInputAndGradientShapes()
    {
        using var compute = new ComputeContext(1);
        var conv = new Conv2d("conv", 2, 3, 3, 1, 0, compute, new Rng(1));
        Assert.Throws<ArgumentException>(() => conv.Forward(new Tensor(1, 3, 5, 5), true));
        Assert.Throws<ArgumentException>(() => conv.Forward(new Tensor(1, 2, 2, 5), true));
        conv.Forward(new Tensor(1, 2, 5, 5), true);
        Assert.Throws<ArgumentException>(() => conv.Backward(new Tensor(1, 3, 3, 4)));
    }

    [Fact]
    public void Initialization_IsUniformWithinOneOverSqrtFanIn()
    {
        using var compute = new ComputeContext(1);
        var conv = new Conv2d("conv", 4, 16, 5, 1, 2, compute, new Rng(5));
        float bound = 1f / MathF.Sqrt(4 * 25);
        var w = conv.Weight.Value.Span.ToArray();
        Assert.All(w, v => Assert.InRange(v, -bound, bound));
        // A uniform sample of 1,600 reaches close to both ends; a normal with std = bound would exceed it.
        Assert.True(w.Max() > 0.95f * bound && w.Min() < -0.95f * bound, $"weights span [{w.Min()}, {w.Max()}], bound {bound}");
        Assert.All(conv.Bias.Value.Span.ToArray(), v => Assert.InRange(v, -bound, bound));
        Assert.Equal(["conv.weight", "conv.bias"], conv.Parameters.Select(p => p.Name));
    }
}

/// <summary>im2col against the plain reference, and col2im as its exact adjoint.</summary>
public class Im2ColTests
{
    public static TheoryData<int, int, int, int, int, int, int> Geometries => new()
    {
        // n, c, h, w, kernel, stride, padding
        { 1, 1, 5, 5, 3, 1, 0 },
        { 3, 2, 7, 5, 3, 2, 1 },
        { 2, 3, 6, 9, 5, 1, 2 },
        { 3, 1, 8, 7, 2, 2, 2 },
        { 1, 2, 4, 6, 1, 2, 1 },
        { 2, 2, 9, 4, 4, 3, 1 },
    };

    [Theory]
    [MemberData(nameof(Geometries))]
    public void Forward_MatchesReference(int n, int c, int h, int w, int k, int s, int p)
    {
        var g = new ConvGeometry(n, c, h, w, k, k, s, p);
        var rng = new Rng(Seed(n, c, h, w, k, s, p));
        var x = TestData.Uniform(rng, n * c * h * w);
        var cols = new float[g.Positions * g.PatchLength];
        Array.Fill(cols, float.NaN);
        using var pool = new WorkerPool(1);
        Im2Col.Forward(g, x, cols, pool);
        var expected = ReferenceOps.Im2Col(ReferenceOps.ToDouble(x), n, c, h, w, k, s, p);
        Assert.Equal(expected, ReferenceOps.ToDouble(cols));
    }

    [Theory]
    [MemberData(nameof(Geometries))]
    public void Backward_IsTheAdjointOfForward(int n, int c, int h, int w, int k, int s, int p)
    {
        // <col2im(a), b> == <a, im2col(b)> for random a [Positions, PatchLength] and b [N, C, H, W].
        var g = new ConvGeometry(n, c, h, w, k, k, s, p);
        var rng = new Rng(Seed(n, c, h, w, k, s, p) + 7);
        var a = TestData.Uniform(rng, g.Positions * g.PatchLength);
        var b = TestData.Uniform(rng, n * c * h * w);
        using var pool = new WorkerPool(1);
        var colsOfB = new float[a.Length];
        Im2Col.Forward(g, b, colsOfB, pool);
        var col2imOfA = new float[b.Length];
        Array.Fill(col2imOfA, float.NaN); // Backward overwrites, so stale values must not leak in
        Im2Col.Backward(g, a, col2imOfA, pool);

        double left = ReferenceOps.Dot(ReferenceOps.ToDouble(col2imOfA), ReferenceOps.ToDouble(b));
        double right = ReferenceOps.Dot(ReferenceOps.ToDouble(a), ReferenceOps.ToDouble(colsOfB));
        double scale = 0;
        for (int i = 0; i < a.Length; i++) scale += Math.Abs((double)a[i] * colsOfB[i]);
        // col2im sums overlapping patch entries in float32: error below ~1e-6 of Σ|terms|.
        Assert.True(Math.Abs(left - right) <= 1e-6 * scale, $"<col2im(a), b> = {left}, <a, im2col(b)> = {right}, scale {scale}");
        Assert.True(scale > 0);
    }

    [Fact]
    public void ResultsAreIdenticalWithOneAndThreeThreads()
    {
        var g = new ConvGeometry(5, 3, 9, 8, 3, 3, 2, 1);
        var rng = new Rng(99);
        var x = TestData.Uniform(rng, g.N * g.C * g.H * g.W);
        var dcols = TestData.Uniform(rng, g.Positions * g.PatchLength);
        float[]? cols1 = null, dx1 = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var pool = new WorkerPool(threads);
            var cols = new float[dcols.Length];
            var dx = new float[x.Length];
            Im2Col.Forward(g, x, cols, pool);
            Im2Col.Backward(g, dcols, dx, pool);
            if (cols1 is null) (cols1, dx1) = (cols, dx);
            else
            {
                Assert.Equal(cols1, cols);
                Assert.Equal(dx1, dx);
            }
        }
    }
}
