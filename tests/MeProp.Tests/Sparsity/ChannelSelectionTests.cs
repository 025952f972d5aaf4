using MeProp.Layers;
using MeProp.Losses;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Sparsity;
using MeProp.Tensors;
using MeProp.Threading;
using static MeProp.Tests.Sparsity.SparseTestData;

namespace MeProp.Tests.Sparsity;

/// <summary>
/// Channel selection (ssProp's): the kept channels are the top k = ceil(ratio·U) by mean score over
/// batch x height x width (ties to the lower channel), every entry of them is kept, and the sparse
/// backward equals the dense backward of dL/dy with the dropped channels zeroed. Selections are compared
/// exactly on dyadic data (exact sums; a running average with decay 1/2 stays exact), gradients within
/// abs 1e-4 + rel 1e-4 as in <see cref="SparseLayerBackwardTests"/>.
/// </summary>
public class ChannelSelectionTests
{
    private static GradientSparsifier Channel(double ratio, double decay = 0, DecayShape shape = DecayShape.Full) =>
        new("conv", new MePropOptions { Ratio = ratio, Decay = decay, DecayShape = shape, Selection = SelectionPolicy.Channel }, convolutional: true, seed: 1);

    /// <summary>Reference: every entry of the k channels with the largest score sums (ties to the lower channel).</summary>
    private static List<(int, float)>[] WholeChannels(float[] dy, double[] channelScores, int n, int units, int plane, int k)
    {
        var result = EmptyUnits(units);
        var order = Enumerable.Range(0, units).OrderByDescending(u => channelScores[u]).ThenBy(u => u).Take(k);
        foreach (int u in order)
            for (int i = 0; i < n; i++)
                for (int p = 0; p < plane; p++) result[u].Add((i * plane + p, dy[(i * units + u) * plane + p]));
        return result;
    }

    /// <summary>Σ over n, p of scores [N, U, P] per channel (the mean times N·P).</summary>
    private static double[] ChannelSums(float[] scores, int n, int units, int plane)
    {
        var sums = new double[units];
        for (int i = 0; i < n; i++)
            for (int u = 0; u < units; u++)
                for (int p = 0; p < plane; p++) sums[u] += scores[(i * units + u) * plane + p];
        return sums;
    }

    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 }, { 3, 5, 7 }, { 2, 16, 25 }, { 4, 7, 9 }, { 10, 6, 196 }, { 3, 9, 41 }, { 2, 33, 17 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void KeepsTheTopKChannelsByMeanMagnitude(int n, int units, int plane)
    {
        var rng = new Rng((ulong)(n * 1009 + units * 31 + plane));
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new WorkerPool(threads);
            foreach (double ratio in new[] { 0.01, 0.3, 0.6, 1.0 })
            {
                var s = Channel(ratio);
                int k = s.Options.KeepCount(units);
                Assert.Equal(Math.Clamp((int)Math.Ceiling(ratio * units - 1e-9), 1, units), k);
                for (int step = 0; step < 2; step++)
                {
                    // Few levels: many channels tie on their sums, and the lower channel must win.
                    var dy = Dyadic(rng, n * units * plane, levels: 1);
                    var g = s.Sparsify(dy, n, units, plane, pool);
                    string what = $"[{n},{units},{plane}] ratio {ratio} threads {threads} step {step}";
                    AssertEntries(WholeChannels(dy, ChannelSums(Abs(dy), n, units, plane), n, units, plane, k), g, n * plane, what);
                    Assert.Equal((long)k * n * plane, g.Selected);
                    Assert.Equal(dy.Count(v => v != 0), g.NonZeroBefore);
                }
            }
        }
    }

    [Fact]
    public void TiesGoToTheLowerChannel()
    {
        // Channels 1, 2 and 3 have the same mean magnitude; channel 0 less, channel 4 more. k = 3 keeps 4, 1, 2.
        int n = 2, units = 5, plane = 2;
        float[] perChannel = [0.25f, 0.5f, 0.5f, 0.5f, 1f];
        var dy = new float[n * units * plane];
        for (int i = 0; i < n; i++)
            for (int u = 0; u < units; u++)
                for (int p = 0; p < plane; p++) dy[(i * units + u) * plane + p] = (p + i) % 2 == 0 ? perChannel[u] : -perChannel[u];
        using var pool = new WorkerPool(2);
        var g = Channel(0.6).Sparsify(dy, n, units, plane, pool);
        Assert.Equal([0, 4, 4, 0, 4], g.Counts.Take(units).ToArray());
        Assert.Equal(12, g.Selected);
    }

    [Theory]
    [InlineData(DecayShape.Full, 13)]
    [InlineData(DecayShape.ChannelPosition, 13)]
    // Rows of 25 and 49: a vector and a tail that overlaps it (its lanes must be scored once).
    [InlineData(DecayShape.Full, 25)]
    [InlineData(DecayShape.Full, 49)]
    public void WithDecayRanksOnTheRunningAverage(DecayShape shape, int plane)
    {
        int n = 4, units = 9;
        var rng = new Rng(77);
        using var pool = new WorkerPool(3);
        var s = Channel(0.4, decay: 0.5, shape);
        int k = s.Options.KeepCount(units);
        var running = new float[shape == DecayShape.Full ? n * units * plane : units * plane];
        for (int step = 0; step < 4; step++)
        {
            var dy = Dyadic(rng, n * units * plane);
            double[] sums;
            if (shape == DecayShape.Full)
            {
                for (int i = 0; i < dy.Length; i++) running[i] = 0.5f * running[i] + 0.5f * MathF.Abs(dy[i]);
                sums = ChannelSums(running, n, units, plane);
            }
            else
            {
                sums = new double[units];
                for (int u = 0; u < units; u++)
                    for (int p = 0; p < plane; p++)
                    {
                        float mean = 0;
                        for (int i = 0; i < n; i++) mean += MathF.Abs(dy[(i * units + u) * plane + p]);
                        running[u * plane + p] = 0.5f * running[u * plane + p] + 0.5f * mean / n;
                        sums[u] += running[u * plane + p];
                    }
            }
            var g = s.Sparsify(dy, n, units, plane, pool);
            AssertEntries(WholeChannels(dy, sums, n, units, plane, k), g, n * plane, $"{shape} step {step}");
            Assert.Equal(running, s.RunningGradient.Span.ToArray());
        }
    }

    [Theory]
    [InlineData(2, 3, 7, 7, 5, 3, 1, 1, 0.4, true)]
    [InlineData(3, 2, 9, 8, 6, 3, 2, 0, 0.5, false)]
    [InlineData(2, 19, 7, 6, 8, 3, 2, 1, 0.3, true)]
    [InlineData(1, 32, 6, 6, 7, 5, 1, 2, 0.2, true)]
    [InlineData(2, 4, 6, 5, 3, 5, 1, 2, 1.0, true)]
    public void SparseBackwardEqualsDenseBackwardWithDroppedChannelsZeroed(int n, int c, int h, int w, int oc, int kernel, int stride, int padding, double ratio, bool computeDx)
    {
        foreach (double decay in ratio == 1.0 ? new[] { 0.0 } : new[] { 0.0, 0.6 })
        {
            string what = $"conv [{n},{c},{h},{w},{oc},{kernel},{stride},{padding}] ratio {ratio} decay {decay} dx {computeDx}";
            using var compute = new ComputeContext(3);
            var dense = new Conv2d("conv", c, oc, kernel, stride, padding, compute, new Rng(21));
            var sparse = new Conv2d("conv", c, oc, kernel, stride, padding, compute, new Rng(21));
            dense.ComputeInputGradient = sparse.ComputeInputGradient = computeDx;
            sparse.Sparsifier = Channel(ratio, decay);
            int k = sparse.Sparsifier.Options.KeepCount(oc);
            var rng = new Rng((ulong)(n * 100 + c * 10 + oc));
            for (int step = 0; step < 3; step++)
            {
                foreach (var p in dense.Parameters.Concat(sparse.Parameters)) p.Gradient.Clear();
                var x = TestData.UniformTensor(rng, n, c, h, w);
                dense.Forward(x, training: true);
                var y = sparse.Forward(x, training: true);
                int plane = y.Dim(2) * y.Dim(3);
                var dy = TestData.UniformTensor(rng, n, oc, y.Dim(2), y.Dim(3));
                var dxSparse = sparse.Backward(dy);
                var result = sparse.Sparsifier.Result;
                // Whole channels: each kept channel holds all its entries, the others none.
                var kept = Enumerable.Range(0, oc).Where(u => result.Counts[u] > 0).ToArray();
                Assert.True(kept.Length == k, $"{what}: {kept.Length} channels kept, expected {k}");
                foreach (int u in kept) Assert.Equal(n * plane, result.Counts[u]);
                var masked = dy.Span.ToArray();
                for (int i = 0; i < n; i++)
                    for (int u = 0; u < oc; u++)
                        if (!kept.Contains(u)) Array.Clear(masked, (i * oc + u) * plane, plane);
                if (ratio == 1.0) Assert.Equal(dy.Span.ToArray(), masked);
                var dxDense = dense.Backward(new Tensor(masked, n, oc, y.Dim(2), y.Dim(3)));
                for (int i = 0; i < 2; i++)
                    TestData.AssertClose(dense.Parameters[i].Gradient.Span, sparse.Parameters[i].Gradient.Span, 1e-4, 1e-4, $"{what} step {step}: {sparse.Parameters[i].Name} grad");
                // Dropped channels' dW rows and db are exactly zero.
                int patch = c * kernel * kernel;
                for (int u = 0; u < oc; u++)
                    if (!kept.Contains(u))
                    {
                        Assert.All(sparse.Weight.Gradient.Span.Slice(u * patch, patch).ToArray(), v => Assert.Equal(0f, v));
                        Assert.Equal(0f, sparse.Bias.Gradient.Span[u]);
                    }
                Assert.True((dxDense is null) == (dxSparse is null), $"{what}: dx null mismatch");
                if (dxDense is not null) TestData.AssertClose(dxDense.Span, dxSparse!.Span, 1e-4, 1e-4, $"{what} step {step}: dx");
            }
        }
    }

    [Fact]
    public void RatioOneKeepsEverythingAndEqualsTheDenseBackward()
    {
        // At ratio 1 the selection is the whole dL/dy; with every entry non-zero the kept channels (all of
        // them, in order) take the dense path on the same patch matrix (dW by the product, dx by the direct
        // convolution), so the gradients are the dense backward's (exact sparsity auto, taking its dense path
        // at this density) bit for bit.
        using var compute = new ComputeContext(2);
        var channel = new Conv2d("conv", 3, 20, 5, 1, 2, compute, new Rng(5));
        var dense = new Conv2d("conv", 3, 20, 5, 1, 2, compute, new Rng(5)) { ExactSparsity = ExactSparsity.Auto };
        channel.Sparsifier = Channel(1.0);
        var rng = new Rng(6);
        var x = TestData.UniformTensor(rng, 4, 3, 12, 12);
        channel.Forward(x, true);
        dense.Forward(x, true);
        var dy = TestData.UniformTensor(rng, 4, 20, 12, 12);
        var dxChannel = channel.Backward(dy)!.Clone();
        var dxDense = dense.Backward(dy)!;
        Assert.Equal(dy.Length, channel.Sparsifier.Result.Selected);
        Assert.Equal(dy.Length, channel.Sparsifier.Result.Count);
        Assert.Equal(dy.Span.ToArray(), Masked(dy.Span, channel.Sparsifier.Result, 20, 144));
        Assert.Equal(0, dense.Counters.ExactSparseBackwards);
        for (int i = 0; i < 2; i++) Assert.Equal(dense.Parameters[i].Gradient.Span.ToArray(), channel.Parameters[i].Gradient.Span.ToArray());
        Assert.Equal(dxDense.Span.ToArray(), dxChannel.Span.ToArray());
    }

    [Fact]
    public void SparseKeptChannelsTakeTheSparseKernels()
    {
        // Kept channels whose dL/dy is mostly zero (after ReLU and pooling) go to the sparse kernels, which
        // compute the same gradients as the products over the kept channels within rounding.
        using var compute = new ComputeContext(2);
        var viaSparse = new Conv2d("conv", 3, 20, 3, 1, 1, compute, new Rng(5)) { Sparsifier = Channel(0.5) };
        var viaProducts = new Conv2d("conv", 3, 20, 3, 1, 1, compute, new Rng(5)) { Sparsifier = Channel(0.5) };
        var rng = new Rng(8);
        var x = TestData.UniformTensor(rng, 3, 3, 9, 9);
        var dense = TestData.UniformTensor(rng, 3, 20, 9, 9);
        var sparse = dense.Clone();
        // Every fifth entry stays: 20% non-zero, below the threshold; the same channels rank first in both.
        for (int i = 0; i < sparse.Length; i++) if (i % 5 != 0) sparse.Span[i] = 0;
        for (int i = 0; i < dense.Length; i++) if (i % 5 != 0) dense.Span[i] *= 1e-30f;
        viaSparse.Forward(x, true);
        viaProducts.Forward(x, true);
        var dxSparse = viaSparse.Backward(sparse)!.Clone();
        var dxProducts = viaProducts.Backward(dense)!;
        Assert.True(viaSparse.Counters.BackwardMacs < viaProducts.Counters.BackwardMacs);
        for (int i = 0; i < 2; i++)
            TestData.AssertClose(viaProducts.Parameters[i].Gradient.Span, viaSparse.Parameters[i].Gradient.Span, 1e-5, 1e-5, viaSparse.Parameters[i].Name);
        TestData.AssertClose(dxProducts.Span, dxSparse.Span, 1e-5, 1e-5, "dx");
    }

    [Fact]
    public void OneAndTwoThreadsGiveIdenticalResults()
    {
        float[][] Run(int threads)
        {
            using var compute = new ComputeContext(threads);
            var conv = new Conv2d("conv", 4, 12, 3, 1, 1, compute, new Rng(31)) { Sparsifier = Channel(0.25, decay: 0.6) };
            var rng = new Rng(32);
            var outputs = new List<float[]>();
            for (int step = 0; step < 4; step++)
            {
                var x = TestData.UniformTensor(rng, 5, 4, 10, 10);
                conv.Forward(x, true);
                var dx = conv.Backward(TestData.UniformTensor(rng, 5, 12, 10, 10))!;
                outputs.Add(dx.Span.ToArray());
                outputs.Add(conv.Sparsifier.Result.Counts.Take(12).Select(v => (float)v).ToArray());
            }
            outputs.AddRange(conv.Parameters.Select(p => p.Gradient.Span.ToArray()));
            outputs.Add(conv.Sparsifier.RunningGradient.Span.ToArray());
            return outputs.ToArray();
        }
        var one = Run(1);
        var two = Run(2);
        Assert.Equal(one.Length, two.Length);
        for (int i = 0; i < one.Length; i++) Assert.Equal(one[i], two[i]);
    }

    [Fact]
    public void IsForConvolutionsOnly()
    {
        var error = Assert.Throws<ArgumentException>(() =>
            new GradientSparsifier("fc1", new MePropOptions { Selection = SelectionPolicy.Channel }, convolutional: false, seed: 1));
        Assert.Contains("fc1", error.Message);
        Assert.Equal("channel", MePropSetup.Cli(SelectionPolicy.Channel));
        // In MePropSetup it applies to the conv layers, and the linear ones take their default.
        using var compute = new ComputeContext(1);
        var model = ModelBuilder.Build(new ModelOptions(), 1, 12, 12, 10, compute, seed: 5);
        MePropSetup.Attach(model, 0.5, 0, DecayShape.Full, SelectionPolicy.Channel, ["conv1", "conv2", "fc1"], seed: 5);
        Assert.Equal(SelectionPolicy.Channel, ((IMePropLayer)model.Layer("conv1")).Sparsifier!.Options.Selection);
        Assert.Equal(SelectionPolicy.PerExample, ((IMePropLayer)model.Layer("fc1")).Sparsifier!.Options.Selection);
        Assert.Throws<ArgumentException>(() => MePropSetup.Attach(model, 0.5, 0, DecayShape.Full, SelectionPolicy.Channel, ["fc1"], seed: 5));
    }

    [Theory]
    [InlineData(0.6, DecayShape.Full)]
    [InlineData(0.6, DecayShape.ChannelPosition)]
    [InlineData(0.0, DecayShape.Full)]
    public void WarmStepsAllocateNothing(double decay, DecayShape shape)
    {
        // As TrainingStepAllocationTests, with channel selection on the conv layers.
        using var compute = new ComputeContext(2);
        var model = ModelBuilder.Build(new ModelOptions { BatchNorm = true }, 1, 12, 12, 10, compute, seed: 5);
        MePropSetup.Attach(model, 0.3, decay, shape, SelectionPolicy.Channel, ["conv1", "conv2", "fc1"], seed: 5);
        foreach (var layer in model.AllLayers.OfType<IMePropLayer>()) layer.Counters.MeasureDensity = true;
        var adam = new Adam(model.Parameters, compute.Pool) { FuseIntoBackward = true };
        var loss = new SoftmaxCrossEntropy();
        var rng = new Rng(9);
        var images = TestData.UniformTensor(rng, 4, 1, 12, 12);
        var labels = Enumerable.Range(0, 4).Select(_ => rng.NextInt(10)).ToArray();
        void Step()
        {
            loss.Forward(model.Forward(images, training: true), labels);
            adam.BeginStep();
            model.Backward(loss.Gradient);
            adam.FinishStep();
        }
        WarmUp.Run(Step);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++) Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"allocated {allocated} bytes in 5 warm steps");
    }
}
