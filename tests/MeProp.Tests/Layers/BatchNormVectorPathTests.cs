using MeProp.Layers;
using MeProp.Tensors;

namespace MeProp.Tests.Layers;

/// <summary>
/// BatchNorm's vector paths against a float64 reference on shapes the small gradient-check shapes miss:
/// planes longer than a float32 summing run (1024) with odd tails, planes of 9 and 25, the paper's
/// shapes, and [N, C] inputs whose channel count is not a multiple of the 64-channel block. Inputs sit
/// far from zero (offset 40) so a cancelling mean/variance would show. Legend: x [N, C, H, W] or [N, C],
/// m = N*H*W values per channel.
/// </summary>
public class BatchNormVectorPathTests
{
    public static TheoryData<int[]> Shapes => new()
    {
        new[] { 3, 5, 37, 29 }, new[] { 2, 4, 28, 28 }, new[] { 4, 3, 5, 5 }, new[] { 2, 8, 3, 3 },
        new[] { 9, 131 }, new[] { 5, 70, 1, 1 }, new[] { 3, 64 }, new[] { 10, 6, 14, 14 },
    };

    private const double Epsilon = 1e-5, Momentum = 0.1;

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TrainingForwardAndBackward_MatchFloat64Reference(int[] shape)
    {
        int n = shape[0], c = shape[1], plane = shape.Length == 4 ? shape[2] * shape[3] : 1;
        var rng = new Rng(1234);
        using var compute = new ComputeContext(2);
        var bn = new BatchNorm("bn", c, compute, (float)Epsilon, (float)Momentum);
        for (int i = 0; i < c; i++)
        {
            bn.Weight.Value.Span[i] = rng.NextUniform(0.5f, 1.5f);
            bn.Bias.Value.Span[i] = rng.NextUniform(-0.5f, 0.5f);
        }
        var x = new Tensor(shape);
        for (int i = 0; i < x.Length; i++) x.Span[i] = 40f + rng.NextUniform(-1f, 1f) * (1 + i % 3);
        var dy = TestData.UniformTensor(rng, shape);

        var y = bn.Forward(x, training: true).Span.ToArray();
        var dx = bn.Backward(dy)!.Span.ToArray();

        var yRef = new double[x.Length];
        var dxRef = new double[x.Length];
        var dgammaRef = new double[c];
        var dbetaRef = new double[c];
        var meanRef = new double[c];
        var varRef = new double[c];
        int m = n * plane;
        for (int ch = 0; ch < c; ch++)
        {
            IEnumerable<int> Indices() { for (int i = 0; i < n; i++) for (int p = 0; p < plane; p++) yield return (i * c + ch) * plane + p; }
            double mean = Indices().Sum(k => (double)x.Span[k]) / m;
            double squares = Indices().Sum(k => Math.Pow(x.Span[k] - mean, 2));
            double inverseStd = 1 / Math.Sqrt(squares / m + Epsilon);
            double gamma = bn.Weight.Value.Span[ch], beta = bn.Bias.Value.Span[ch];
            double sumDy = 0, sumDyXhat = 0;
            foreach (int k in Indices())
            {
                double xhat = (x.Span[k] - mean) * inverseStd;
                yRef[k] = gamma * xhat + beta;
                sumDy += dy.Span[k];
                sumDyXhat += dy.Span[k] * xhat;
            }
            foreach (int k in Indices())
            {
                double xhat = (x.Span[k] - mean) * inverseStd;
                dxRef[k] = gamma * inverseStd * (dy.Span[k] - sumDy / m - xhat * sumDyXhat / m);
            }
            dgammaRef[ch] = sumDyXhat;
            dbetaRef[ch] = sumDy;
            meanRef[ch] = (1 - Momentum) * 0 + Momentum * mean;
            varRef[ch] = (1 - Momentum) * 1 + Momentum * squares / (m - 1);
        }
        string name = string.Join("x", shape);
        TestData.AssertClose(yRef, ToDouble(y), 1e-5, 1e-5, $"y {name}");
        TestData.AssertClose(dxRef, ToDouble(dx), 1e-5, 1e-4, $"dx {name}");
        TestData.AssertClose(dgammaRef, ToDouble(bn.Weight.Gradient.Span), 1e-4, 1e-5, $"dgamma {name}");
        TestData.AssertClose(dbetaRef, ToDouble(bn.Bias.Gradient.Span), 1e-4, 1e-5, $"dbeta {name}");
        TestData.AssertClose(meanRef, ToDouble(bn.RunningMean.Span), 1e-6, 1e-6, $"running_mean {name}");
        TestData.AssertClose(varRef, ToDouble(bn.RunningVariance.Span), 1e-6, 1e-6, $"running_var {name}");

        var yEval = bn.Forward(x, training: false).Span.ToArray();
        var yEvalRef = new double[x.Length];
        for (int k = 0; k < x.Length; k++)
        {
            int ch = k / plane % c;
            double scale = bn.Weight.Value.Span[ch] / Math.Sqrt(bn.RunningVariance.Span[ch] + Epsilon);
            yEvalRef[k] = (x.Span[k] - bn.RunningMean.Span[ch]) * scale + bn.Bias.Value.Span[ch];
        }
        TestData.AssertClose(yEvalRef, ToDouble(yEval), 1e-5, 1e-5, $"y_eval {name}");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Results_DoNotDependOnThreadCount(int[] shape)
    {
        var rng = new Rng(77);
        var x = TestData.UniformTensor(rng, shape);
        var dy = TestData.UniformTensor(rng, shape);
        float[]? reference = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var compute = new ComputeContext(threads);
            var bn = new BatchNorm("bn", shape[1], compute);
            var y = bn.Forward(x, training: true).Span.ToArray();
            var dx = bn.Backward(dy)!.Span.ToArray();
            var yEval = bn.Forward(x, training: false).Span.ToArray();
            float[] all = [.. y, .. dx, .. yEval, .. bn.Weight.Gradient.Span, .. bn.Bias.Gradient.Span, .. bn.RunningMean.Span, .. bn.RunningVariance.Span];
            if (reference is null) reference = all;
            else Assert.True(reference.AsSpan().SequenceEqual(all), $"{threads} threads differ from 1 thread");
        }
    }

    private static double[] ToDouble(ReadOnlySpan<float> values)
    {
        var result = new double[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = values[i];
        return result;
    }
}
