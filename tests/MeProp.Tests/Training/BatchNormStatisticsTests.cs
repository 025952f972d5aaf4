using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Tensors;
using MeProp.Training;

namespace MeProp.Tests.Training;

/// <summary>Recomputing batch norm statistics from data (PyTorch's update_bn): values, layers inside blocks, what stays untouched.</summary>
public class BatchNormStatisticsTests
{
    // bn1 sees the images themselves, so its statistics can be computed by hand; res1.bn1 sits inside a block.
    private const string Network = """
        {"input": [2, 4, 4], "classes": 3, "layers": [
          {"type": "batchnorm"}, {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
          {"type": "residual", "layers": [{"type": "batchnorm"}, {"type": "relu"}]},
          {"type": "globalavgpool"}, {"type": "linear", "out_features": 3}]}
        """;

    private static Dataset Images(int count, ulong seed)
    {
        var rng = new Rng(seed);
        var labels = new byte[count];
        for (int i = 0; i < count; i++) labels[i] = (byte)(i % 3);
        return new Dataset(TestData.Uniform(rng, count * 2 * 16, -1f, 3f), labels, 2, 4, 4, 3);
    }

    private static void Disturb(BatchNorm layer)
    {
        layer.RunningMean.Span.Fill(5f);
        layer.RunningVariance.Span.Fill(9f);
        layer.RestoreCounter(layer.Name + ".num_batches_tracked", 40);
    }

    [Fact]
    public void RunningStatisticsBecomeTheAverageOfTheBatches()
    {
        using var compute = new ComputeContext(2);
        var model = NetworkFactory.Build(NetworkSpec.Parse(Network, "net.json"), compute, seed: 3);
        var first = (BatchNorm)model.Layer("bn1");
        var nested = (BatchNorm)model.Layer("res1.bn1");
        nested.Momentum = 0.25f;
        Disturb(first);
        Disturb(nested);
        var parameters = model.Parameters.Select(p => p.Value.Span.ToArray()).ToList();
        var data = Images(7, 5); // batches of 3: two full ones and a single image, which is left out

        Assert.Equal(2, BatchNormStatistics.Recompute(model, data, batchSize: 3));

        var expectedMean = new double[2];
        var expectedVar = new double[2];
        for (int batch = 0; batch < 2; batch++)
        {
            for (int c = 0; c < 2; c++)
            {
                var values = new List<double>();
                for (int n = 3 * batch; n < 3 * batch + 3; n++)
                    for (int p = 0; p < 16; p++) values.Add(data.Images.Span[(n * 2 + c) * 16 + p]);
                double mean = values.Average();
                expectedMean[c] += mean / 2;
                expectedVar[c] += values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1) / 2;
            }
        }
        TestData.AssertClose(expectedMean, first.RunningMean.Span.ToArray().Select(v => (double)v).ToArray(), 1e-6, 1e-6, "bn1 running_mean");
        TestData.AssertClose(expectedVar, first.RunningVariance.Span.ToArray().Select(v => (double)v).ToArray(), 1e-6, 1e-6, "bn1 running_var");
        Assert.Equal(2, first.NumBatchesTracked);

        // The layer inside the block was reset and recomputed as well, and keeps its own momentum.
        Assert.Equal(2, nested.NumBatchesTracked);
        Assert.All(nested.RunningMean.Span.ToArray(), v => Assert.True(float.IsFinite(v) && v != 5f));
        Assert.All(nested.RunningVariance.Span.ToArray(), v => Assert.True(float.IsFinite(v) && v > 0f && v != 9f));
        Assert.Equal(0.1f, first.Momentum);
        Assert.Equal(0.25f, nested.Momentum);
        for (int i = 0; i < parameters.Count; i++) Assert.Equal(parameters[i], model.Parameters[i].Value.Span.ToArray());

        // Starting from a reset, a second pass lands on the same statistics.
        var nestedMean = nested.RunningMean.Span.ToArray();
        var nestedVariance = nested.RunningVariance.Span.ToArray();
        BatchNormStatistics.Recompute(model, data, batchSize: 3);
        Assert.Equal(nestedMean, nested.RunningMean.Span.ToArray());
        Assert.Equal(nestedVariance, nested.RunningVariance.Span.ToArray());
    }

    [Fact]
    public void ANetworkWithoutBatchNormIsLeftAlone()
    {
        using var compute = new ComputeContext(1);
        var model = NetworkFactory.Build(NetworkSpec.Parse("""
            {"input": [2, 4, 4], "classes": 3, "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3}]}
            """, "net.json"), compute, seed: 3);
        Assert.Equal(0, BatchNormStatistics.Recompute(model, Images(4, 6), batchSize: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => BatchNormStatistics.Recompute(model, Images(4, 6), batchSize: 1));
    }
}
