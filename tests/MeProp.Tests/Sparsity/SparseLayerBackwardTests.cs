using MeProp.Layers;
using MeProp.Sparsity;
using MeProp.Tensors;
using static MeProp.Tests.Sparsity.SparseTestData;

namespace MeProp.Tests.Sparsity;

/// <summary>
/// The meProp layer properties: with a sparsifier, Conv2d and Linear Backward equal the dense Backward
/// of the masked dL/dy (entries not kept set to zero; at ratio 1 nothing is masked). Two identical
/// layers (same init seed) run side by side; parameter gradients start from the same random values,
/// since Backward adds into them. Both paths are float32 with different summation orders (GEMM blocks
/// vs per-entry FMA), so dW, db and dx are compared within abs 1e-4 + rel 1e-4 (sums of at most a few
/// hundred terms of magnitude below 1; a lost or misplaced entry is off by 0.01 or more).
/// </summary>
public class SparseLayerBackwardTests
{
    private const double Absolute = 1e-4, Relative = 1e-4;

    private static void Prefill(Rng rng, IMePropLayer a, IMePropLayer b)
    {
        for (int i = 0; i < a.Parameters.Count; i++)
        {
            var values = TestData.Uniform(rng, a.Parameters[i].Gradient.Length);
            values.CopyTo(a.Parameters[i].Gradient.Span);
            values.CopyTo(b.Parameters[i].Gradient.Span);
            Assert.Equal(a.Parameters[i].Value.Span.ToArray(), b.Parameters[i].Value.Span.ToArray());
        }
    }

    private static void AssertSameGradients(IMePropLayer expected, IMePropLayer actual, Tensor? dxExpected, Tensor? dxActual, string what)
    {
        for (int i = 0; i < expected.Parameters.Count; i++)
            TestData.AssertClose(expected.Parameters[i].Gradient.Span, actual.Parameters[i].Gradient.Span, Absolute, Relative, $"{what}: {actual.Parameters[i].Name} grad");
        Assert.True((dxExpected is null) == (dxActual is null), $"{what}: dx null mismatch");
        if (dxExpected is not null)
        {
            Assert.Equal(dxExpected.ShapeArray(), dxActual!.ShapeArray());
            TestData.AssertClose(dxExpected.Span, dxActual.Span, Absolute, Relative, $"{what}: dx");
        }
    }

    public static IEnumerable<object[]> ConvCases()
    {
        // N, C, H, W, OC, kernel, stride, padding
        int[][] geometries =
        [
            [2, 3, 7, 7, 5, 3, 1, 1],
            [3, 2, 9, 8, 4, 3, 2, 0],
            [2, 4, 6, 5, 3, 5, 1, 2],
            [1, 1, 5, 5, 2, 3, 2, 1],
            [3, 5, 11, 9, 7, 3, 2, 2],
            [2, 17, 5, 6, 6, 1, 1, 0],
            [2, 19, 7, 6, 5, 3, 2, 1], // C >= 16: the channels-last weight-gradient path
            [1, 32, 6, 6, 4, 5, 1, 2],
        ];
        foreach (var g in geometries)
            foreach (double ratio in new[] { 1.0, 0.1, 0.3 })
                foreach (bool dx in new[] { true, false })
                    yield return [g, ratio, dx];
    }

    [Theory]
    [MemberData(nameof(ConvCases))]
    public void Conv2dSparseBackwardEqualsDenseBackwardOfMaskedGradient(int[] geometry, double ratio, bool computeDx)
    {
        int n = geometry[0], c = geometry[1], h = geometry[2], w = geometry[3], oc = geometry[4], kernel = geometry[5], stride = geometry[6], padding = geometry[7];
        var policies = ratio == 1.0
            ? new[] { SelectionPolicy.PerChannel }
            : new[] { SelectionPolicy.PerChannel, SelectionPolicy.PerExampleChannel, SelectionPolicy.Random };
        foreach (var policy in policies)
            foreach (double decay in new[] { 0.0, 0.9 })
            {
                if ((ratio == 1.0 || policy == SelectionPolicy.Random) && decay > 0) continue;
                string what = $"conv [{string.Join(",", geometry)}] ratio {ratio} dx {computeDx} {policy} decay {decay}";
                using var compute = new ComputeContext(3);
                var dense = new Conv2d("conv", c, oc, kernel, stride, padding, compute, new Rng(21));
                var sparse = new Conv2d("conv", c, oc, kernel, stride, padding, compute, new Rng(21));
                dense.ComputeInputGradient = sparse.ComputeInputGradient = computeDx;
                sparse.Sparsifier = new GradientSparsifier("conv", new MePropOptions { Ratio = ratio, Decay = decay, Selection = policy }, convolutional: true, seed: 3);
                var rng = new Rng((ulong)(n * 100 + c * 10 + h + oc * 1000));
                Prefill(rng, dense, sparse);
                long stored = 0, selected = 0, denseMacs = 0;
                // Two steps: the second runs on reused buffers (and on the running average when decay > 0).
                for (int step = 0; step < 2; step++)
                {
                    var x = TestData.UniformTensor(rng, n, c, h, w);
                    dense.Forward(x, training: true);
                    var y = sparse.Forward(x, training: true);
                    int oh = y.Dim(2), ow = y.Dim(3), plane = oh * ow;
                    var dy = TestData.UniformTensor(rng, n, oc, oh, ow);
                    var dxSparse = sparse.Backward(dy);
                    var result = sparse.Sparsifier.Result;
                    var masked = Masked(dy.Span, result, oc, plane);
                    if (ratio == 1.0) Assert.Equal(dy.Span.ToArray(), masked);
                    else Assert.True(result.Selected < dy.Length, $"{what}: nothing was dropped");
                    var dxDense = dense.Backward(new Tensor(masked, n, oc, oh, ow));
                    AssertSameGradients(dense, sparse, dxDense, dxSparse, $"{what} step {step}");

                    int k = c * kernel * kernel;
                    stored += result.Count;
                    selected += result.Selected;
                    denseMacs += (long)n * plane * k * oc * (computeDx ? 2 : 1);
                    Assert.Equal(stored * k * (computeDx ? 2 : 1), sparse.Counters.BackwardMacs);
                    Assert.Equal(denseMacs, sparse.Counters.DenseBackwardMacs);
                    Assert.Equal(denseMacs, dense.Counters.BackwardMacs);
                    Assert.Equal(denseMacs, dense.Counters.DenseBackwardMacs);
                    Assert.Equal(selected, sparse.Counters.Gradient.Kept);
                    Assert.Equal((long)(step + 1) * dy.Length, sparse.Counters.Gradient.Total);
                }
            }
    }

    public static TheoryData<int, int, int, double, bool> LinearCases()
    {
        var data = new TheoryData<int, int, int, double, bool>();
        int[][] shapes = [[7, 13, 11], [1, 5, 3], [33, 50, 20], [4, 1, 1], [16, 17, 31]];
        foreach (var s in shapes)
            foreach (double ratio in new[] { 1.0, 0.1, 0.3 })
                foreach (bool dx in new[] { true, false })
                    data.Add(s[0], s[1], s[2], ratio, dx);
        return data;
    }

    [Theory]
    [MemberData(nameof(LinearCases))]
    public void LinearSparseBackwardEqualsDenseBackwardOfMaskedGradient(int n, int inFeatures, int outFeatures, double ratio, bool computeDx)
    {
        foreach (var policy in new[] { SelectionPolicy.PerExample, SelectionPolicy.Unified, SelectionPolicy.Random })
            foreach (double decay in new[] { 0.0, 0.9 })
            {
                if ((ratio == 1.0 || policy == SelectionPolicy.Random) && decay > 0) continue;
                string what = $"linear [{n},{inFeatures},{outFeatures}] ratio {ratio} dx {computeDx} {policy} decay {decay}";
                using var compute = new ComputeContext(3);
                var dense = new Linear("fc", inFeatures, outFeatures, compute, new Rng(22));
                var sparse = new Linear("fc", inFeatures, outFeatures, compute, new Rng(22));
                dense.ComputeInputGradient = sparse.ComputeInputGradient = computeDx;
                sparse.Sparsifier = new GradientSparsifier("fc", new MePropOptions { Ratio = ratio, Decay = decay, Selection = policy }, convolutional: false, seed: 4);
                var rng = new Rng((ulong)(n * 100 + inFeatures * 10 + outFeatures));
                Prefill(rng, dense, sparse);
                long stored = 0, selected = 0, denseMacs = 0;
                for (int step = 0; step < 2; step++)
                {
                    var x = TestData.UniformTensor(rng, n, inFeatures);
                    dense.Forward(x, training: true);
                    sparse.Forward(x, training: true);
                    var dy = TestData.UniformTensor(rng, n, outFeatures);
                    var dxSparse = sparse.Backward(dy);
                    var result = sparse.Sparsifier.Result;
                    var masked = Masked(dy.Span, result, outFeatures, 1);
                    if (ratio == 1.0) Assert.Equal(dy.Span.ToArray(), masked);
                    var dxDense = dense.Backward(new Tensor(masked, n, outFeatures));
                    AssertSameGradients(dense, sparse, dxDense, dxSparse, $"{what} step {step}");

                    stored += result.Count;
                    selected += result.Selected;
                    denseMacs += (long)n * outFeatures * inFeatures * (computeDx ? 2 : 1);
                    Assert.Equal(stored * inFeatures * (computeDx ? 2 : 1), sparse.Counters.BackwardMacs);
                    Assert.Equal(denseMacs, sparse.Counters.DenseBackwardMacs);
                    Assert.Equal(denseMacs, dense.Counters.BackwardMacs);
                    Assert.Equal(selected, sparse.Counters.Gradient.Kept);
                }
            }
    }

    [Fact]
    public void Conv2dAtRatioOneEqualsLayerWithoutSparsifierOnFullGradient()
    {
        // Spelled out for the headline property: k = 100% gives the dense gradients, on the same dy.
        using var compute = new ComputeContext(2);
        var dense = new Conv2d("conv", 3, 8, 5, 1, 2, compute, new Rng(5));
        var sparse = new Conv2d("conv", 3, 8, 5, 1, 2, compute, new Rng(5));
        sparse.Sparsifier = new GradientSparsifier("conv", new MePropOptions { Ratio = 1.0 }, convolutional: true, seed: 1);
        // As a Trainer sets them (exact sparsity auto): a layer with exact sparsity off keeps its patch matrix
        // for the backward, which a meProp layer's forward does not, and the two dense products differ in the last bits.
        dense.ExactSparsity = sparse.ExactSparsity = ExactSparsity.Auto;
        var rng = new Rng(6);
        Prefill(rng, dense, sparse);
        var x = TestData.UniformTensor(rng, 4, 3, 12, 12);
        dense.Forward(x, true);
        sparse.Forward(x, true);
        var dy = TestData.UniformTensor(rng, 4, 8, 12, 12);
        var dxDense = dense.Backward(dy)!.Clone();
        var dxSparse = sparse.Backward(dy);
        Assert.Equal(dy.Length, sparse.Sparsifier.Result.Selected);
        Assert.Equal(dy.Length, sparse.Sparsifier.Result.Count);
        // Every entry kept: the layer runs the dense backward, so the gradients are the same to the bit.
        for (int i = 0; i < 2; i++)
            Assert.Equal(dense.Parameters[i].Gradient.Span.ToArray(), sparse.Parameters[i].Gradient.Span.ToArray());
        Assert.Equal(dxDense.Span.ToArray(), dxSparse!.Span.ToArray());
        Assert.Equal(dense.Counters.BackwardMacs, sparse.Counters.BackwardMacs);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.8)]
    public void AtRatioOneTheCountersRecordTheSelectionAndTheWorkOfTheDenseBackward(double zeroFraction)
    {
        // With most of dL/dy zero (after ReLU and pooling) the dense layer takes the exact-sparsity products:
        // the ratio-1 layer does the same work, and says so, while its kept entries are the selection's.
        using var compute = new ComputeContext(2);
        var denseConv = new Conv2d("conv", 3, 6, 3, 1, 1, compute, new Rng(5)) { ExactSparsity = ExactSparsity.Auto };
        var sparseConv = new Conv2d("conv", 3, 6, 3, 1, 1, compute, new Rng(5)) { ExactSparsity = ExactSparsity.Auto };
        sparseConv.Sparsifier = new GradientSparsifier("conv", new MePropOptions { Ratio = 1.0 }, convolutional: true, seed: 1);
        var denseLinear = new Linear("fc", 40, 30, compute, new Rng(6)) { ExactSparsity = ExactSparsity.Auto };
        var sparseLinear = new Linear("fc", 40, 30, compute, new Rng(6)) { ExactSparsity = ExactSparsity.Auto };
        sparseLinear.Sparsifier = new GradientSparsifier("fc", new MePropOptions { Ratio = 1.0 }, convolutional: false, seed: 1);
        var rng = new Rng(8);
        Tensor WithZeros(params int[] shape)
        {
            var t = TestData.UniformTensor(rng, shape);
            for (int i = 0; i < t.Length; i++) if (rng.NextUniform(0, 1) < zeroFraction) t.Span[i] = 0;
            return t;
        }
        var x = TestData.UniformTensor(rng, 4, 3, 8, 8);
        denseConv.Forward(x, true);
        sparseConv.Forward(x, true);
        var dy = WithZeros(4, 6, 8, 8);
        denseConv.Backward(dy);
        sparseConv.Backward(dy);
        var features = TestData.UniformTensor(rng, 4, 40);
        denseLinear.Forward(features, true);
        sparseLinear.Forward(features, true);
        var dyLinear = WithZeros(4, 30);
        denseLinear.Backward(dyLinear);
        sparseLinear.Backward(dyLinear);
        foreach (var (dense, sparse) in new (IMePropLayer, IMePropLayer)[] { (denseConv, sparseConv), (denseLinear, sparseLinear) })
        {
            Assert.Equal(dense.Counters.BackwardMacs, sparse.Counters.BackwardMacs);
            Assert.Equal(dense.Counters.DenseBackwardMacs, sparse.Counters.DenseBackwardMacs);
            Assert.Equal(sparse.Sparsifier!.Result.Selected, sparse.Counters.Gradient.Kept);
            Assert.Equal(sparse.Sparsifier.Result.DenseCount, sparse.Counters.Gradient.Kept);
        }
        if (zeroFraction > 0) Assert.True(denseConv.Counters.BackwardMacs < denseConv.Counters.DenseBackwardMacs, "the exact-sparsity path was not taken: the test proves less than it says");
    }

    [Theory]
    [InlineData(SelectionPolicy.PerExample, 0.0)]
    [InlineData(SelectionPolicy.Unified, 0.6)]
    [InlineData(SelectionPolicy.Random, 0.0)]
    public void LinearAtRatioOneEqualsLayerWithoutSparsifierToTheBit(SelectionPolicy selection, double decay)
    {
        using var compute = new ComputeContext(2);
        var dense = new Linear("fc", 37, 21, compute, new Rng(5));
        var sparse = new Linear("fc", 37, 21, compute, new Rng(5));
        sparse.Sparsifier = new GradientSparsifier("fc", new MePropOptions { Ratio = 1.0, Selection = selection, Decay = decay }, convolutional: false, seed: 1);
        var rng = new Rng(7);
        Prefill(rng, dense, sparse);
        var x = TestData.UniformTensor(rng, 6, 37);
        dense.Forward(x, true);
        sparse.Forward(x, true);
        var dy = TestData.UniformTensor(rng, 6, 21);
        var dxDense = dense.Backward(dy)!.Clone();
        var dxSparse = sparse.Backward(dy)!;
        for (int i = 0; i < 2; i++)
            Assert.Equal(dense.Parameters[i].Gradient.Span.ToArray(), sparse.Parameters[i].Gradient.Span.ToArray());
        Assert.Equal(dxDense.Span.ToArray(), dxSparse.Span.ToArray());
        // The selection still ran: its running gradient carries on.
        if (decay > 0) Assert.Contains(sparse.Sparsifier.RunningGradient.Span.ToArray(), v => v != 0);
    }

    [Fact]
    public void SparseBackwardIgnoresDroppedEntries()
    {
        // Changing dy where it was not kept must not change anything: same selection, same result.
        using var compute = new ComputeContext(1);
        var a = new Conv2d("conv", 2, 3, 3, 1, 1, compute, new Rng(8));
        a.Sparsifier = new GradientSparsifier("conv", new MePropOptions { Ratio = 0.1 }, convolutional: true, seed: 1);
        var rng = new Rng(9);
        var x = TestData.UniformTensor(rng, 2, 2, 6, 6);
        a.Forward(x, true);
        var dy = TestData.UniformTensor(rng, 2, 3, 6, 6);
        var dx1 = a.Backward(dy)!.Clone();
        var grads1 = a.Parameters.Select(p => p.Gradient.Span.ToArray()).ToArray();
        var masked = Masked(dy.Span, a.Sparsifier.Result, 3, 36);
        // Shrink every dropped entry towards zero (never above a kept one in magnitude).
        var shrunk = dy.Span.ToArray().Select((v, i) => masked[i] != 0 ? v : v * 0.5f).ToArray();
        foreach (var p in a.Parameters) p.Gradient.Clear();
        a.Forward(x, true);
        var dx2 = a.Backward(new Tensor(shrunk, 2, 3, 6, 6))!;
        Assert.Equal(dx1.Span.ToArray(), dx2.Span.ToArray());
        for (int i = 0; i < 2; i++)
        {
            var expected = grads1[i];
            var actual = a.Parameters[i].Gradient.Span.ToArray();
            // grads1 included whatever was there before (zeros), so both runs start from zero.
            Assert.Equal(expected, actual);
        }
    }
}
