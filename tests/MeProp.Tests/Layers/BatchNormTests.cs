using MeProp.Tests.Reference;
using MeProp.Layers;
using MeProp.Tensors;

namespace MeProp.Tests.Layers;

/// <summary>
/// BatchNorm against a float64 reference: finite-difference gradients, running statistics, inference
/// with the running estimates, accumulation, state and errors. Legend: x [N, C, H, W] or [N, C],
/// m = N*H*W values per channel, r = dL/dy for L = Σ r·y.
/// </summary>
public class BatchNormTests
{
    public static TheoryData<int[]> Shapes => new()
    {
        new[] { 3, 5, 7, 4 }, new[] { 2, 3 }, new[] { 1, 2, 3, 3 }, new[] { 7, 4 }, new[] { 2, 3, 1, 1 },
        new[] { 5, 1, 2, 3 }, new[] { 4, 6, 3, 5 },
    };

    private const double Epsilon = 1e-5;

    /// <summary>Float64 training-mode batch norm: batch mean, biased variance.</summary>
    private static double[] ReferenceForward(double[] x, double[] gamma, double[] beta, int[] shape) =>
        ReferenceOps.BatchNormTraining(x, gamma, beta, shape[0], shape[1], shape.Length == 4 ? shape[2] * shape[3] : 1, Epsilon);

    private static double Loss(double[] x, double[] gamma, double[] beta, int[] shape, double[] r)
    {
        var y = ReferenceForward(x, gamma, beta, shape);
        double sum = 0;
        for (int i = 0; i < y.Length; i++) sum += r[i] * y[i];
        return sum;
    }

    /// <summary>Central differences of L with respect to every element of <paramref name="target"/> (modified and restored).</summary>
    private static double[] NumericGradient(double[] target, Func<double> loss)
    {
        const double h = 1e-5;
        var grad = new double[target.Length];
        for (int i = 0; i < target.Length; i++)
        {
            double saved = target[i];
            target[i] = saved + h;
            double plus = loss();
            target[i] = saved - h;
            double minus = loss();
            target[i] = saved;
            grad[i] = (plus - minus) / (2 * h);
        }
        return grad;
    }

    private static BatchNorm MakeLayer(Rng rng, int channels, ComputeContext compute, float momentum = 0.1f)
    {
        var bn = new BatchNorm("bn", channels, compute, (float)Epsilon, momentum);
        for (int i = 0; i < channels; i++)
        {
            bn.Weight.Value.Span[i] = rng.NextUniform(0.5f, 1.5f);
            bn.Bias.Value.Span[i] = rng.NextUniform(-0.5f, 0.5f);
        }
        return bn;
    }

    /// <summary>Inputs with a channel-dependent offset and scale, so a missing mean or variance shows.</summary>
    private static Tensor Input(Rng rng, int[] shape, float offset = 0.7f, float scale = 1.5f)
    {
        var x = new Tensor(shape);
        for (int i = 0; i < x.Length; i++) x.Span[i] = offset + scale * rng.NextUniform(-1f, 1f);
        return x;
    }

    private static double[] ToDouble(ReadOnlySpan<float> values)
    {
        var result = new double[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = values[i];
        return result;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TrainingGradients_MatchFiniteDifferences(int[] shape)
    {
        using var compute = new ComputeContext(2);
        var rng = new Rng((ulong)(shape.Sum() * 7919 + shape.Length));
        int channels = shape[1];
        var bn = MakeLayer(rng, channels, compute);
        var x = Input(rng, shape);
        var r = TestData.UniformTensor(rng, shape);

        var y = bn.Forward(x, training: true);
        var dx = bn.Backward(r);
        Assert.NotNull(dx);

        double[] xd = ToDouble(x.Span), gamma = ToDouble(bn.Weight.Value.Span), beta = ToDouble(bn.Bias.Value.Span), rd = ToDouble(r.Span);
        // Forward: float32 output of float64-accumulated statistics.
        TestData.AssertClose(ReferenceForward(xd, gamma, beta, shape), ToDouble(y.Span), 1e-5, 1e-5, $"y {string.Join("x", shape)}");
        Func<double> loss = () => Loss(xd, gamma, beta, shape, rd);
        // Tolerance: float32 rounding of xhat, dy and the result (~1e-7 relative per term, summed over up
        // to m = 105 terms) against float64 central differences (h = 1e-5, truncation ~1e-10).
        TestData.AssertClose(NumericGradient(xd, loss), ToDouble(dx.Span), 2e-5, 1e-4, $"dx {string.Join("x", shape)}");
        TestData.AssertClose(NumericGradient(gamma, loss), ToDouble(bn.Weight.Gradient.Span), 2e-5, 1e-4, $"dgamma {string.Join("x", shape)}");
        TestData.AssertClose(NumericGradient(beta, loss), ToDouble(bn.Bias.Gradient.Span), 2e-5, 1e-4, $"dbeta {string.Join("x", shape)}");
    }

    [Fact]
    public void RunningStatistics_AfterTwoForwards_FollowPyTorchUpdate()
    {
        using var compute = new ComputeContext(2);
        var rng = new Rng(11);
        int[] shape = [3, 4, 5, 2];
        const double momentum = 0.3;
        var bn = MakeLayer(rng, 4, compute, (float)momentum);
        var x1 = Input(rng, shape, 0.7f, 1.5f);
        var x2 = Input(rng, shape, -2f, 0.5f);
        bn.Forward(x1, training: true);
        bn.Forward(x2, training: true);

        var expectedMean = new double[4];
        var expectedVar = new double[4];
        Array.Fill(expectedVar, 1.0);
        foreach (var x in new[] { x1, x2 })
        {
            for (int c = 0; c < 4; c++)
            {
                var values = new List<double>();
                for (int n = 0; n < 3; n++) for (int p = 0; p < 10; p++) values.Add(x.Span[(n * 4 + c) * 10 + p]);
                double mean = values.Average();
                double unbiased = values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1);
                expectedMean[c] = (1 - momentum) * expectedMean[c] + momentum * mean;
                expectedVar[c] = (1 - momentum) * expectedVar[c] + momentum * unbiased;
            }
        }
        TestData.AssertClose(expectedMean, ToDouble(bn.RunningMean.Span), 1e-6, 1e-6, "running_mean");
        TestData.AssertClose(expectedVar, ToDouble(bn.RunningVariance.Span), 1e-6, 1e-6, "running_var");
        Assert.Equal(2, bn.NumBatchesTracked);

        // An inference Forward leaves the running statistics and the count alone.
        bn.Forward(Input(rng, shape, 5f, 3f), training: false);
        TestData.AssertClose(expectedMean, ToDouble(bn.RunningMean.Span), 1e-6, 1e-6, "running_mean after eval");
        TestData.AssertClose(expectedVar, ToDouble(bn.RunningVariance.Span), 1e-6, 1e-6, "running_var after eval");
        Assert.Equal(2, bn.NumBatchesTracked);
    }

    [Fact]
    public void NullMomentum_AveragesTheBatchesSinceReset()
    {
        using var compute = new ComputeContext(2);
        var rng = new Rng(12);
        int[] shape = [3, 2, 2, 3];
        var bn = MakeLayer(rng, 2, compute, 0.1f);
        bn.Forward(Input(rng, shape, 4f, 2f), training: true);
        bn.ResetRunningStatistics();
        Assert.All(bn.RunningMean.Span.ToArray(), v => Assert.Equal(0f, v));
        Assert.All(bn.RunningVariance.Span.ToArray(), v => Assert.Equal(1f, v));
        Assert.Equal(0, bn.NumBatchesTracked);

        bn.Momentum = null;
        var batches = new[] { Input(rng, shape, 0.7f, 1.5f), Input(rng, shape, -2f, 0.5f), Input(rng, shape, 1f, 3f) };
        foreach (var x in batches) bn.Forward(x, training: true);
        var expectedMean = new double[2];
        var expectedVar = new double[2];
        foreach (var x in batches)
        {
            for (int c = 0; c < 2; c++)
            {
                var values = new List<double>();
                for (int n = 0; n < 3; n++) for (int p = 0; p < 6; p++) values.Add(x.Span[(n * 2 + c) * 6 + p]);
                double mean = values.Average();
                expectedMean[c] += mean / batches.Length;
                expectedVar[c] += values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1) / batches.Length;
            }
        }
        TestData.AssertClose(expectedMean, ToDouble(bn.RunningMean.Span), 1e-6, 1e-6, "running_mean");
        TestData.AssertClose(expectedVar, ToDouble(bn.RunningVariance.Span), 1e-6, 1e-6, "running_var");
        Assert.Equal(3, bn.NumBatchesTracked);
    }

    [Theory]
    [InlineData(new[] { 4, 3, 2, 5 })]
    [InlineData(new[] { 5, 3 })]
    [InlineData(new[] { 1, 3 })]
    public void Inference_UsesRunningEstimates(int[] shape)
    {
        using var compute = new ComputeContext(2);
        var rng = new Rng(23);
        var bn = MakeLayer(rng, 3, compute);
        // Running estimates far from the batch's own statistics, so batch statistics would fail.
        float[] runningMean = [2.5f, -1f, 0.25f], runningVar = [4f, 0.25f, 9f];
        runningMean.CopyTo(bn.RunningMean.Span);
        runningVar.CopyTo(bn.RunningVariance.Span);
        var x = Input(rng, shape);
        var y = bn.Forward(x, training: false);

        int plane = shape.Length == 4 ? shape[2] * shape[3] : 1;
        var expected = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            int c = i / plane % 3;
            expected[i] = bn.Weight.Value.Span[c] * (x.Span[i] - runningMean[c]) / Math.Sqrt(runningVar[c] + Epsilon) + bn.Bias.Value.Span[c];
        }
        TestData.AssertClose(expected, ToDouble(y.Span), 1e-6, 1e-6, "y_eval");
        Assert.Equal(runningMean, bn.RunningMean.Span.ToArray());
        Assert.Equal(runningVar, bn.RunningVariance.Span.ToArray());
    }

    [Fact]
    public void Backward_AddsIntoParameterGradients()
    {
        using var compute = new ComputeContext(2);
        var rng = new Rng(31);
        int[] shape = [3, 2, 3, 3];
        var bn = MakeLayer(rng, 2, compute);
        var x = Input(rng, shape);
        var dy = TestData.UniformTensor(rng, shape);
        bn.Forward(x, training: true);
        bn.Backward(dy);
        var gammaOnce = bn.Weight.Gradient.Span.ToArray();
        var betaOnce = bn.Bias.Gradient.Span.ToArray();
        Assert.Contains(gammaOnce, v => v != 0f);
        Assert.Contains(betaOnce, v => v != 0f);

        float[] startGamma = [0.5f, -2f], startBeta = [3f, 0.25f];
        startGamma.CopyTo(bn.Weight.Gradient.Span);
        startBeta.CopyTo(bn.Bias.Gradient.Span);
        bn.Forward(x, training: true);
        bn.Backward(dy);
        for (int c = 0; c < 2; c++)
        {
            Assert.Equal(startGamma[c] + gammaOnce[c], bn.Weight.Gradient.Span[c], 5);
            Assert.Equal(startBeta[c] + betaOnce[c], bn.Bias.Gradient.Span[c], 5);
        }
    }

    [Fact]
    public void WithoutInputGradient_ReturnsNullButStillAccumulatesParameterGradients()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(37);
        int[] shape = [4, 3, 2, 2];
        var x = Input(rng, shape);
        var dy = TestData.UniformTensor(rng, shape);
        var withDx = MakeLayer(new Rng(5), 3, compute);
        var withoutDx = MakeLayer(new Rng(5), 3, compute);
        withoutDx.ComputeInputGradient = false;
        withDx.Forward(x, training: true);
        Assert.NotNull(withDx.Backward(dy));
        withoutDx.Forward(x, training: true);
        Assert.Null(withoutDx.Backward(dy));
        Assert.Equal(withDx.Weight.Gradient.Span.ToArray(), withoutDx.Weight.Gradient.Span.ToArray());
        Assert.Equal(withDx.Bias.Gradient.Span.ToArray(), withoutDx.Bias.Gradient.Span.ToArray());
        Assert.Contains(withoutDx.Weight.Gradient.Span.ToArray(), v => v != 0f);
    }

    [Fact]
    public void Results_DoNotDependOnThreadCount()
    {
        var rng = new Rng(41);
        int[] shape = [5, 7, 3, 4];
        var x = Input(rng, shape);
        var dy = TestData.UniformTensor(rng, shape);
        float[]? reference = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var compute = new ComputeContext(threads);
            var bn = MakeLayer(new Rng(9), 7, compute);
            var y = bn.Forward(x, training: true).Span.ToArray();
            var dx = bn.Backward(dy)!.Span.ToArray();
            float[] all = [.. y, .. dx, .. bn.Weight.Gradient.Span, .. bn.Bias.Gradient.Span, .. bn.RunningMean.Span, .. bn.RunningVariance.Span];
            if (reference is null) reference = all;
            else Assert.True(reference.AsSpan().SequenceEqual(all), $"{threads} threads differ from 1 thread");
        }
    }

    [Fact]
    public void ForwardAndBackward_AllocateNothingOnceWarm()
    {
        using var compute = new ComputeContext(2);
        var rng = new Rng(43);
        int[] shape = [4, 3, 5, 5];
        var bn = MakeLayer(rng, 3, compute);
        var x = Input(rng, shape);
        var dy = TestData.UniformTensor(rng, shape);
        void Step()
        {
            bn.Forward(x, training: true);
            bn.Backward(dy);
            bn.Forward(x, training: false);
        }
        // With pauses, so the pool's one-time sleep and wake-up paths are taken before the measurement.
        WarmUp.Run(Step);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"allocated {allocated} bytes in 10 warm steps");
    }

    [Fact]
    public void State_UsesPyTorchNames_AndRestoresBatchCount()
    {
        using var compute = new ComputeContext(1);
        var rng = new Rng(47);
        var bn = MakeLayer(rng, 3, compute);
        bn.Forward(Input(rng, [4, 3]), training: true);
        bn.Forward(Input(rng, [4, 3]), training: true);
        Assert.Equal(["bn.weight", "bn.bias"], bn.Parameters.Select(p => p.Name));
        var tensors = bn.StateTensors().ToList();
        Assert.Equal(["bn.running_mean", "bn.running_var"], tensors.Select(t => t.Name));
        Assert.Same(bn.RunningMean, tensors[0].Tensor);
        Assert.Same(bn.RunningVariance, tensors[1].Tensor);
        var metadata = bn.StateMetadata().ToDictionary(e => e.Key, e => e.Value);
        Assert.Equal("2", metadata["bn.num_batches_tracked"]);

        var restored = new BatchNorm("bn", 3, compute);
        restored.RestoreMetadata(metadata);
        Assert.Equal(2, restored.NumBatchesTracked);
        Assert.Throws<ArgumentException>(() => restored.RestoreMetadata(new Dictionary<string, string>()));
        Assert.Throws<ArgumentException>(() => restored.RestoreMetadata(new Dictionary<string, string> { ["bn.num_batches_tracked"] = "-1" }));
    }

    [Fact]
    public void NewLayer_StartsAtPyTorchDefaults()
    {
        using var compute = new ComputeContext(1);
        var bn = new BatchNorm("bn1", 4, compute);
        Assert.All(bn.Weight.Value.Span.ToArray(), v => Assert.Equal(1f, v));
        Assert.All(bn.Bias.Value.Span.ToArray(), v => Assert.Equal(0f, v));
        Assert.All(bn.RunningMean.Span.ToArray(), v => Assert.Equal(0f, v));
        Assert.All(bn.RunningVariance.Span.ToArray(), v => Assert.Equal(1f, v));
        Assert.Equal(1e-5f, bn.Epsilon);
        Assert.Equal(0.1f, bn.Momentum);
        Assert.Equal(0, bn.NumBatchesTracked);
    }

    [Theory]
    [InlineData(new[] { 2, 4, 3, 3 })]
    [InlineData(new[] { 2, 2 })]
    [InlineData(new[] { 2, 3, 4 })]
    [InlineData(new[] { 6 })]
    public void WrongShape_IsAnErrorNamingTheExpectedChannels(int[] shape)
    {
        using var compute = new ComputeContext(1);
        var bn = new BatchNorm("bn1", 3, compute);
        var e = Assert.Throws<ArgumentException>(() => bn.Forward(new Tensor(shape), training: true));
        Assert.Contains("bn1", e.Message);
        Assert.Contains("[N, 3, H, W]", e.Message);
        Assert.Contains("[" + string.Join(", ", shape) + "]", e.Message);
        Assert.Throws<ArgumentException>(() => bn.OutputShape(shape));
    }

    [Fact]
    public void MisuseIsReported()
    {
        using var compute = new ComputeContext(1);
        var bn = new BatchNorm("bn1", 3, compute);
        // Backward needs the saved statistics of a training Forward.
        Assert.Throws<InvalidOperationException>(() => bn.Backward(new Tensor(2, 3)));
        bn.Forward(new Tensor(2, 3), training: false);
        Assert.Throws<InvalidOperationException>(() => bn.Backward(new Tensor(2, 3)));
        // One value per channel has no variance (PyTorch refuses it too); inference is fine.
        Assert.Throws<ArgumentException>(() => bn.Forward(new Tensor(1, 3), training: true));
        Assert.Throws<ArgumentException>(() => bn.Forward(new Tensor(1, 3, 1, 1), training: true));
        bn.Forward(new Tensor(2, 3, 2, 2), training: true);
        Assert.Throws<ArgumentException>(() => bn.Backward(new Tensor(2, 3, 2, 3)));
        Assert.Throws<ArgumentException>(() => new BatchNorm("bn2", 0, compute));
        Assert.Throws<ArgumentException>(() => new BatchNorm("bn2", 3, compute, epsilon: 0f));
        Assert.Throws<ArgumentException>(() => new BatchNorm("bn2", 3, compute, momentum: 1.5f));
        Assert.Throws<ArgumentException>(() => bn.Momentum = -0.1f);
        Assert.Throws<ArgumentException>(() => bn.Momentum = float.NaN);
        Assert.Equal(0.1f, bn.Momentum);
    }
}
