using MeProp.Kernels;
using MeProp.Layers;
using MeProp.Optimizers;
using MeProp.Tensors;
using static MeProp.Tests.Layers.LayerTestSupport;

namespace MeProp.Tests.Layers;

/// <summary>
/// A dense backward on dL/dy's non-zeros only (ExactSparsity Always, and Auto below its threshold) gives
/// the gradients of the plain dense backward (Off) within float rounding: the same terms summed in
/// another order, ~1e-6 relative for the few dozen terms per output here, where one dropped or doubled
/// entry would be off by ~|dy·x| (0.01 to 1). Auto above its threshold matches Off within rounding too
/// (the weight gradient without the patch matrix groups the sums differently), db to the bit. A stride-1
/// convolution's forward from a sparse input (Always, and Auto below its input threshold) matches the
/// dense forward within rounding.
/// </summary>
public class ExactSparsityTests
{
    /// <summary>dy with zeros at random positions (either sign of zero), the rest uniform in [-1, 1].</summary>
    private static Tensor SparseGradient(Rng rng, int[] shape, double density)
    {
        var dy = new Tensor(shape);
        for (int i = 0; i < dy.Length; i++)
            dy.Span[i] = rng.NextDouble() < density ? rng.NextUniform(-1, 1) : (i % 2 == 0 ? 0f : -0f);
        return dy;
    }

    public static TheoryData<int, int, int, int, int, int, int, int, double, bool> ConvCases => new()
    {
        // n, c, h, w, outChannels, kernel, stride, padding, density, input gradient
        { 1, 1, 5, 5, 2, 3, 1, 0, 0.2, true },
        { 3, 2, 7, 5, 3, 3, 2, 1, 0.05, true },
        { 2, 3, 9, 7, 4, 5, 1, 2, 0.3, false },
        { 3, 17, 6, 6, 5, 3, 1, 1, 0.1, true },
        { 2, 32, 8, 8, 7, 5, 1, 2, 0.02, true },
        { 2, 4, 6, 6, 3, 3, 1, 1, 0, true },   // all zero: dW, db, dx all zero
        { 2, 5, 6, 7, 3, 3, 1, 1, 1, true },   // no zeros at all
    };

    private static Conv2d MakeConv(ComputeContext compute, ulong seed, int c, int oc, int k, int s, int p, ExactSparsity setting, bool inputGradient)
    {
        var rng = new Rng(seed);
        var conv = new Conv2d("conv", c, oc, k, s, p, compute, rng) { ExactSparsity = setting, ComputeInputGradient = inputGradient };
        Randomize(conv.Weight, rng);
        Randomize(conv.Bias, rng);
        return conv;
    }

    private static (float[] Y, float[]? Dx, float[] DW, float[] Db, Conv2d Conv) RunConv(ExactSparsity setting, int threads,
        int n, int c, int h, int w, int oc, int k, int s, int p, double density, bool inputGradient)
    {
        using var compute = new ComputeContext(threads);
        var conv = MakeConv(compute, 7, c, oc, k, s, p, setting, inputGradient);
        var rng = new Rng(11);
        var x = TestData.UniformTensor(rng, n, c, h, w);
        var y = Copy(conv.Forward(x, training: true));
        var dx = conv.Backward(SparseGradient(rng, conv.OutputShape(x.Shape), density));
        return (y, dx is null ? null : Copy(dx), Gradient(conv.Weight), Gradient(conv.Bias), conv);
    }

    [Theory]
    [MemberData(nameof(ConvCases))]
    public void Conv_ExactBackward_MatchesDense(int n, int c, int h, int w, int oc, int k, int s, int p, double density, bool inputGradient)
    {
        var dense = RunConv(ExactSparsity.Off, 1, n, c, h, w, oc, k, s, p, density, inputGradient);
        var exact = RunConv(ExactSparsity.Always, 2, n, c, h, w, oc, k, s, p, density, inputGradient);
        TestData.AssertClose(dense.Y, exact.Y, 1e-5, 1e-5, "y");
        TestData.AssertClose(dense.DW, exact.DW, 1e-5, 1e-5, "dW");
        TestData.AssertClose(dense.Db, exact.Db, 1e-5, 1e-5, "db");
        Assert.Equal(inputGradient, exact.Dx is not null);
        if (inputGradient) TestData.AssertClose(dense.Dx!, exact.Dx!, 1e-5, 1e-5, "dx");
        Assert.Equal(1, exact.Conv.Counters.ExactSparseBackwards);
        Assert.Equal(0, dense.Conv.Counters.ExactSparseBackwards);
        long outputs = (long)n * oc * ReferenceSize(h, k, s, p) * ReferenceSize(w, k, s, p);
        Assert.Equal(outputs, exact.Conv.Counters.Gradient.Total);
        Assert.Equal(exact.Conv.Counters.Gradient.NonZero, exact.Conv.Counters.Gradient.Kept);
        // A kept entry costs one patch per product.
        Assert.Equal(exact.Conv.Counters.Gradient.NonZero * c * k * k * (inputGradient ? 2 : 1), exact.Conv.Counters.BackwardMacs);
    }

    private static int ReferenceSize(int size, int k, int s, int p) => (size + 2 * p - k) / s + 1;

    [Fact]
    public void Conv_Auto_ChoosesByDensity_AndMatchesDenseWhenDense()
    {
        // Below the threshold: the sparse kernels; above: the direct weight gradient and, at stride 1, the
        // direct input gradient. Both equal the products within rounding, db to the bit.
        foreach (int channels in new[] { 16, 17 })
        {
            var sparse = RunConv(ExactSparsity.Auto, 2, 3, 4, 8, 8, channels, 3, 1, 1, ExactSparsityThresholds.Convolution / 2, true);
            Assert.Equal(1, sparse.Conv.Counters.ExactSparseBackwards);
            var dense = RunConv(ExactSparsity.Off, 2, 3, 4, 8, 8, channels, 3, 1, 1, 0.9, true);
            var auto = RunConv(ExactSparsity.Auto, 2, 3, 4, 8, 8, channels, 3, 1, 1, 0.9, true);
            Assert.Equal(0, auto.Conv.Counters.ExactSparseBackwards);
            Assert.Equal(1, auto.Conv.Counters.Backwards);
            TestData.AssertClose(dense.Dx!, auto.Dx!, 1e-5, 1e-5, "dx");
            TestData.AssertClose(dense.DW, auto.DW, 1e-4, 1e-5, "dW");
            Assert.Equal(dense.Db, auto.Db);
            // Auto counted dL/dy's non-zeros for its choice, and records them.
            Assert.InRange(auto.Conv.Counters.Gradient.DensityBefore, 0.8, 0.97);
        }
    }

    public static TheoryData<int, int, int, int, int, int, int, int> DenseCases => new()
    {
        // n, c, h, w, outChannels, kernel, stride, padding: stride 1 takes the direct input gradient for
        // any padding below the kernel size; stride 2 and a padding of the kernel size take dY·W and col2im.
        // The weight gradient is the direct one (no patch matrix) in every case; the last two cases sum
        // over more positions than one block of the products' depth.
        { 2, 3, 7, 5, 20, 3, 1, 1 },
        { 3, 17, 6, 9, 18, 3, 1, 0 },
        { 2, 5, 8, 8, 24, 5, 1, 2 },
        { 1, 4, 9, 6, 17, 5, 1, 4 },
        { 3, 33, 5, 5, 40, 1, 1, 0 },
        { 2, 6, 9, 7, 19, 3, 2, 1 },
        { 2, 3, 6, 6, 20, 2, 1, 2 },
        { 3, 16, 17, 15, 16, 3, 1, 1 },
        { 4, 7, 12, 12, 33, 3, 2, 1 },
    };

    [Theory]
    [MemberData(nameof(DenseCases))]
    public void Conv_AutoDenseBackward_MatchesOff(int n, int c, int h, int w, int oc, int k, int s, int p)
    {
        var dense = RunConv(ExactSparsity.Off, 1, n, c, h, w, oc, k, s, p, 1, true);
        var auto = RunConv(ExactSparsity.Auto, 2, n, c, h, w, oc, k, s, p, 1, true);
        Assert.Equal(0, auto.Conv.Counters.ExactSparseBackwards);
        TestData.AssertClose(dense.Y, auto.Y, 1e-5, 1e-5, "y");
        TestData.AssertClose(dense.Dx!, auto.Dx!, 1e-5, 1e-5, "dx");
        // The products and the direct weight gradient sum the positions in different groupings.
        TestData.AssertClose(dense.DW, auto.DW, 1e-5 * n * h * w, 1e-5, "dW");
        Assert.Equal(dense.Db, auto.Db);
    }

    [Fact]
    public void Conv_ExactBackward_IsTheSameWithOneAndThreeThreads()
    {
        foreach (var (setting, channels, density) in new[] { (ExactSparsity.Always, 7, 0.2), (ExactSparsity.Auto, 20, 1.0) })
        {
            var one = RunConv(setting, 1, 5, 6, 9, 8, channels, 3, 1, 1, density, true);
            var three = RunConv(setting, 3, 5, 6, 9, 8, channels, 3, 1, 1, density, true);
            Assert.Equal(one.Y, three.Y);
            Assert.Equal(one.Dx, three.Dx);
            Assert.Equal(one.DW, three.DW);
            Assert.Equal(one.Db, three.Db);
        }
    }

    public static TheoryData<int, int, int, int, int, int, int, double> SparseInputCases => new()
    {
        // n, c, h, w, outChannels, kernel, padding, input density (stride 1): "same" and smaller paddings,
        // non-square images, a 1x1 kernel, channel counts off the vector widths, an all-zero input.
        { 2, 32, 7, 6, 64, 5, 2, 0.12 },
        { 3, 1, 9, 9, 32, 5, 2, 0.2 },
        { 2, 16, 8, 10, 16, 3, 1, 0.1 },
        { 2, 5, 7, 5, 17, 3, 0, 0.3 },
        { 1, 7, 6, 6, 9, 5, 4, 0.15 },
        { 3, 33, 4, 5, 3, 1, 0, 0.05 },
        { 2, 4, 5, 5, 6, 3, 1, 0 },
        { 2, 6, 5, 4, 8, 3, 1, 1 },
    };

    [Theory]
    [MemberData(nameof(SparseInputCases))]
    public void Conv_SparseInputForward_MatchesDense(int n, int c, int h, int w, int oc, int k, int p, double density)
    {
        using var one = new ComputeContext(1);
        using var two = new ComputeContext(2);
        var x = SparseGradient(new Rng(5), [n, c, h, w], density);
        var dy = SparseGradient(new Rng(6), [n, oc, h + 2 * p - k + 1, w + 2 * p - k + 1], 1);
        var dense = MakeConv(one, 3, c, oc, k, 1, p, ExactSparsity.Off, true);
        var sparse = MakeConv(two, 3, c, oc, k, 1, p, ExactSparsity.Always, true);
        // Float32 sums of up to C·K·K (y), OC·K·K (dx) and N·OH·OW (dW, db) terms of magnitude <= 1, in
        // different orders.
        double yTerms = c * k * k + 1, dxTerms = oc * k * k, dWTerms = n * h * w;
        var expected = Copy(dense.Forward(x, training: false));
        TestData.AssertClose(expected, Copy(sparse.Forward(x, training: false)), 1e-6 * yTerms, 1e-5, "y (evaluation)");
        // A training forward from the sparse input leaves what the backward reads.
        var y = Copy(dense.Forward(x, training: true));
        var dx = Copy(dense.Backward(dy)!);
        TestData.AssertClose(y, Copy(sparse.Forward(x, training: true)), 1e-6 * yTerms, 1e-5, "y (training)");
        TestData.AssertClose(dx, Copy(sparse.Backward(dy)!), 1e-6 * dxTerms, 1e-5, "dx");
        TestData.AssertClose(Gradient(dense.Weight), Gradient(sparse.Weight), 1e-6 * dWTerms, 1e-5, "dW");
        TestData.AssertClose(Gradient(dense.Bias), Gradient(sparse.Bias), 1e-6 * dWTerms, 1e-5, "db");
    }

    [Fact]
    public void Conv_Auto_ChoosesTheSparseInputForwardByDensity()
    {
        // Below the input threshold Auto runs what Always runs, to the bit; above it the dense
        // image-by-image forward, which is also the evaluation forward with exact sparsity off.
        using var compute = new ComputeContext(2);
        foreach (double density in new[] { ExactSparsityThresholds.ConvolutionInput / 2, 0.9 })
        {
            var x = SparseGradient(new Rng(9), [3, 8, 9, 9], density);
            var auto = Copy(MakeConv(compute, 4, 8, 12, 3, 1, 1, ExactSparsity.Auto, true).Forward(x, training: false));
            var always = Copy(MakeConv(compute, 4, 8, 12, 3, 1, 1, ExactSparsity.Always, true).Forward(x, training: false));
            var off = Copy(MakeConv(compute, 4, 8, 12, 3, 1, 1, ExactSparsity.Off, true).Forward(x, training: false));
            TestData.AssertClose(off, always, 1e-5, 1e-5, "y");
            Assert.Equal(density < 0.5 ? always : off, auto);
            Assert.NotEqual(always, off);
        }
        // Stride 2 always runs the dense forward.
        var strided = SparseGradient(new Rng(10), [2, 4, 9, 9], 0.05);
        Assert.Equal(Copy(MakeConv(compute, 4, 4, 6, 3, 2, 1, ExactSparsity.Off, true).Forward(strided, training: false)),
            Copy(MakeConv(compute, 4, 4, 6, 3, 2, 1, ExactSparsity.Always, true).Forward(strided, training: false)));
    }

    [Fact]
    public void Conv_SparseInputForward_ThenDenseBackward_IsTheSameWithOneAndThreeThreads()
    {
        // Auto on a 15% input takes the sparse-input forward: equal to Always to the bit, and not to the
        // image-by-image forward (Off's evaluation forward), which sums each output in another order. With
        // a dense dL/dy the backward after it is the dense one without a patch matrix.
        var x = SparseGradient(new Rng(12), [5, 6, 9, 8], 0.15);
        var dy = SparseGradient(new Rng(13), [5, 20, 9, 8], 1);
        (float[] Y, float[] Dx, float[] DW)? first = null;
        foreach (int threads in new[] { 1, 3 })
        {
            using var compute = new ComputeContext(threads);
            var conv = MakeConv(compute, 8, 6, 20, 3, 1, 1, ExactSparsity.Auto, true);
            var y = Copy(conv.Forward(x, training: true));
            var dx = Copy(conv.Backward(dy)!);
            Assert.Equal(0, conv.Counters.ExactSparseBackwards);
            if (first is { } f)
            {
                Assert.Equal(f.Y, y);
                Assert.Equal(f.Dx, dx);
                Assert.Equal(f.DW, Gradient(conv.Weight));
                continue;
            }
            first = (y, dx, Gradient(conv.Weight));
            Assert.Equal(y, Copy(MakeConv(compute, 8, 6, 20, 3, 1, 1, ExactSparsity.Always, true).Forward(x, training: false)));
            var off = MakeConv(compute, 8, 6, 20, 3, 1, 1, ExactSparsity.Off, true);
            var byImage = Copy(off.Forward(x, training: false));
            Assert.NotEqual(byImage, y);
            TestData.AssertClose(byImage, y, 1e-5, 1e-5, "y");
            off.Forward(x, training: true);
            TestData.AssertClose(Copy(off.Backward(dy)!), dx, 1e-5 * 20 * 9, 1e-5, "dx");
            TestData.AssertClose(Gradient(off.Weight), Gradient(conv.Weight), 1e-5 * 5 * 9 * 8, 1e-5, "dW");
        }
    }

    [Fact]
    public void Conv_AutoDenseBackward_CanRunTwiceAfterOneForward()
    {
        // The dense backward reads only what the forward kept (the padded input), so a second backward
        // adds the same gradients once more.
        using var compute = new ComputeContext(1);
        var conv = MakeConv(compute, 3, 3, 4, 3, 1, 1, ExactSparsity.Auto, true);
        var rng = new Rng(5);
        var x = TestData.UniformTensor(rng, 2, 3, 6, 6);
        conv.Forward(x, training: true);
        var dy = SparseGradient(rng, conv.OutputShape(x.Shape), 1);
        var dx1 = Copy(conv.Backward(dy)!);
        var dW1 = Gradient(conv.Weight);
        var dx2 = Copy(conv.Backward(dy)!);
        Assert.Equal(dx1, dx2);
        TestData.AssertClose(dW1.Select(v => 2 * v).ToArray(), conv.Weight.Gradient.Span, 1e-6, 1e-6, "dW after two backwards");
    }

    [Fact]
    public void Conv_RefusesExactSparsitySwitchedOnBetweenForwardAndBackward()
    {
        using var compute = new ComputeContext(1);
        var conv = MakeConv(compute, 3, 2, 3, 3, 1, 1, ExactSparsity.Off, true);
        var rng = new Rng(6);
        var x = TestData.UniformTensor(rng, 2, 2, 5, 5);
        var dy = SparseGradient(rng, conv.OutputShape(x.Shape), 0.1);
        conv.Forward(x, training: true);
        conv.ExactSparsity = ExactSparsity.Always;
        Assert.Throws<InvalidOperationException>(() => conv.Backward(dy));
        conv.Forward(x, training: true);
        conv.ExactSparsity = ExactSparsity.Off;
        Assert.Throws<InvalidOperationException>(() => conv.Backward(dy));
    }

    public static TheoryData<int, int, int, double, bool> LinearCases => new()
    {
        // batch, in, out, density, input gradient
        { 1, 3, 2, 0.5, true },
        { 7, 33, 17, 0.1, true },
        { 20, 50, 40, 0.03, false },
        { 5, 16, 9, 0, true },
        { 4, 19, 6, 1, true },
    };

    [Fact]
    public void Linear_SparseInputForward_ChosenByDensity_MatchesDense()
    {
        // Auto on a 10% input multiplies its non-zeros (equal to Always to the bit, to the dense product
        // within rounding); on a dense input, or in a layer with fewer outputs than the minimum, it runs the
        // dense product (equal to Off to the bit). The backward reads the input as before.
        using var compute = new ComputeContext(2);
        foreach (var (outFeatures, density, sparse) in new[] { (80, 0.1, true), (80, 0.9, false), (ExactSparsityThresholds.LinearInputMinOutputs - 1, 0.1, false) })
        {
            var x = SparseGradient(new Rng(21), [6, 150], density);
            var dy = SparseGradient(new Rng(22), [6, outFeatures], 1);
            Linear Make(ExactSparsity setting) => new("fc", 150, outFeatures, compute, new Rng(4)) { ExactSparsity = setting };
            var off = Make(ExactSparsity.Off);
            var auto = Make(ExactSparsity.Auto);
            var yOff = Copy(off.Forward(x, training: true));
            var yAuto = Copy(auto.Forward(x, training: true));
            var yAlways = Copy(Make(ExactSparsity.Always).Forward(x, training: false));
            if (sparse)
            {
                Assert.Equal(yAlways, yAuto);
                Assert.NotEqual(yOff, yAuto);
            }
            else Assert.Equal(yOff, yAuto);
            TestData.AssertClose(yOff, yAuto, 1e-5 * 150, 1e-5, "y");
            TestData.AssertClose(Copy(off.Backward(dy)!), Copy(auto.Backward(dy)!), 1e-5 * outFeatures, 1e-5, "dx");
            TestData.AssertClose(Gradient(off.Weight), Gradient(auto.Weight), 1e-5 * 6, 1e-5, "dW");
        }
    }

    private static (float[] Dx, float[] DW, float[] Db, Linear Layer) RunLinear(ExactSparsity setting, int threads, int batch, int inFeatures, int outFeatures, double density, bool inputGradient)
    {
        using var compute = new ComputeContext(threads);
        var rng = new Rng(9);
        var linear = new Linear("fc", inFeatures, outFeatures, compute, rng) { ExactSparsity = setting, ComputeInputGradient = inputGradient };
        var x = TestData.UniformTensor(rng, batch, inFeatures);
        linear.Forward(x, training: true);
        var dx = linear.Backward(SparseGradient(rng, [batch, outFeatures], density));
        return (dx is null ? [] : Copy(dx), Gradient(linear.Weight), Gradient(linear.Bias), linear);
    }

    [Theory]
    [MemberData(nameof(LinearCases))]
    public void Linear_ExactBackward_MatchesDense(int batch, int inFeatures, int outFeatures, double density, bool inputGradient)
    {
        var dense = RunLinear(ExactSparsity.Off, 1, batch, inFeatures, outFeatures, density, inputGradient);
        var exact = RunLinear(ExactSparsity.Always, 2, batch, inFeatures, outFeatures, density, inputGradient);
        TestData.AssertClose(dense.DW, exact.DW, 1e-5, 1e-5, "dW");
        TestData.AssertClose(dense.Db, exact.Db, 1e-5, 1e-5, "db");
        TestData.AssertClose(dense.Dx, exact.Dx, 1e-5, 1e-5, "dx");
        Assert.Equal(1, exact.Layer.Counters.ExactSparseBackwards);
    }

    [Fact]
    public void Linear_Auto_PrefersTheFusedUpdate_ThenChoosesByDensity()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(4);
        var linear = new Linear("fc", 12, 8, compute, rng) { ExactSparsity = ExactSparsity.Auto };
        var adam = new Adam(linear.Parameters, compute.Pool) { FuseIntoBackward = true };
        // One non-zero entry of 32: a density of 1/32, below the threshold.
        var dy = new Tensor(4, 8);
        dy.Span[13] = 0.5f;
        var x = TestData.UniformTensor(rng, 4, 12);

        // Batch 4 fuses: the fused dense update is taken whatever the density.
        linear.Forward(x, training: true);
        adam.BeginStep();
        linear.Backward(dy);
        adam.FinishStep();
        Assert.Equal(0, linear.Counters.ExactSparseBackwards);

        // Without the optimizer's fusion, a sparse enough dL/dy takes the sparse kernels.
        linear.Forward(x, training: true);
        linear.Backward(dy);
        Assert.Equal(1, linear.Counters.ExactSparseBackwards);
        linear.Forward(x, training: true);
        linear.Backward(SparseGradient(rng, [4, 8], 1));
        Assert.Equal(1, linear.Counters.ExactSparseBackwards);
        Assert.Equal(3, linear.Counters.Backwards);
    }
}
