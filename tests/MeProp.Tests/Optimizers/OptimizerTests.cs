using MeProp.Layers;
using MeProp.Optimizers;
using MeProp.Tensors;
using MeProp.Tests.Reference;
using MeProp.Threading;

namespace MeProp.Tests.Optimizers;

/// <summary>
/// Adam and SGD with momentum against float64 loops of PyTorch's formulas, on parameters long enough
/// to use the SIMD body, the scalar tail and several of Adam's thread chunks (16,384 values each).
/// Tolerance: 1e-6 + 1e-6·|reference| on parameters of size O(1) (an Adam step is ~lr = 1e-2).
/// </summary>
public class OptimizerTests
{
    private static Parameter[] MakeParameters(Rng rng, params int[] lengths) =>
        lengths.Select((n, i) =>
        {
            var p = new Parameter($"p{i}", n);
            TestData.Uniform(rng, n).CopyTo(p.Value.Span);
            return p;
        }).ToArray();

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Adam_MatchesFloat64Reference(int threads)
    {
        var rng = new Rng(71);
        var parameters = MakeParameters(rng, 1, 37, 40_003);
        var reference = parameters.Select(p => (P: ReferenceOps.ToDouble(p.Value.Span), M: new double[p.Value.Length], V: new double[p.Value.Length])).ToArray();
        using var pool = new WorkerPool(threads);
        var adam = new Adam(parameters, pool, learningRate: 1e-2f, beta1: 0.8f, beta2: 0.99f, epsilon: 1e-6f);
        for (int t = 1; t <= 4; t++)
        {
            for (int i = 0; i < parameters.Length; i++)
            {
                var g = TestData.Uniform(rng, parameters[i].Value.Length, -2f, 2f);
                g.CopyTo(parameters[i].Gradient.Span);
                ReferenceOps.AdamStep(reference[i].P, ReferenceOps.ToDouble(g), reference[i].M, reference[i].V, t, 1e-2, 0.8f, 0.99f, 1e-6f);
            }
            adam.Update();
            for (int i = 0; i < parameters.Length; i++)
            {
                GradientCheck.AssertMatches(reference[i].P, parameters[i].Value.Span, $"step {t} {parameters[i].Name}", 1e-6, 1e-6);
                Assert.True(parameters[i].Gradient.Span.IndexOfAnyExcept(0f) < 0, $"step {t}: {parameters[i].Name} gradient not zeroed");
            }
        }
        Assert.Equal(4, adam.Step);
        Assert.Equal(["p0.exp_avg", "p0.exp_avg_sq", "p1.exp_avg", "p1.exp_avg_sq", "p2.exp_avg", "p2.exp_avg_sq"], adam.State().Select(s => s.Name));
        var firstMoment = adam.State().First(s => s.Name == "p1.exp_avg").State;
        GradientCheck.AssertMatches(reference[1].M, firstMoment.Span, "p1.exp_avg", 1e-6, 1e-5);
    }

    [Fact]
    public void Adam_GivesIdenticalResultsWithOneAndThreeThreads()
    {
        float[]? first = null;
        foreach (int threads in new[] { 1, 3 })
        {
            var rng = new Rng(72);
            var p = MakeParameters(rng, 50_001)[0];
            using var pool = new WorkerPool(threads);
            var adam = new Adam([p], pool);
            for (int t = 0; t < 3; t++)
            {
                TestData.Uniform(rng, p.Value.Length).CopyTo(p.Gradient.Span);
                adam.Update();
            }
            if (first is null) first = p.Value.Span.ToArray();
            else Assert.Equal(first, p.Value.Span.ToArray());
        }
    }

    [Fact]
    public void SgdMomentum_MatchesFloat64Reference()
    {
        var rng = new Rng(73);
        var parameters = MakeParameters(rng, 3, 29);
        var p = parameters.Select(x => ReferenceOps.ToDouble(x.Value.Span)).ToArray();
        var v = parameters.Select(x => new double[x.Value.Length]).ToArray();
        var sgd = new SgdMomentum(parameters, learningRate: 0.05f, momentum: 0.7f);
        for (int t = 1; t <= 4; t++)
        {
            for (int i = 0; i < parameters.Length; i++)
            {
                var g = TestData.Uniform(rng, parameters[i].Value.Length);
                g.CopyTo(parameters[i].Gradient.Span);
                for (int j = 0; j < g.Length; j++)
                {
                    v[i][j] = 0.7f * v[i][j] + g[j];
                    p[i][j] -= 0.05f * v[i][j];
                }
            }
            sgd.Update();
            for (int i = 0; i < parameters.Length; i++)
            {
                GradientCheck.AssertMatches(p[i], parameters[i].Value.Span, $"step {t} p{i}", 1e-6, 1e-6);
                Assert.True(parameters[i].Gradient.Span.IndexOfAnyExcept(0f) < 0, $"step {t}: p{i} gradient not zeroed");
            }
        }
        Assert.Equal(["p0.momentum_buffer", "p1.momentum_buffer"], sgd.State().Select(s => s.Name));
    }

    [Fact]
    public void Constructors_RejectBadHyperparameters()
    {
        var p = new Parameter("p", 3);
        using var pool = new WorkerPool(1);
        Assert.Throws<ArgumentException>(() => new Adam([p], pool, learningRate: 0f));
        Assert.Throws<ArgumentException>(() => new Adam([p], pool, beta1: 1f));
        Assert.Throws<ArgumentException>(() => new Adam([p], pool, beta2: -0.1f));
        Assert.Throws<ArgumentException>(() => new Adam([p], pool, epsilon: 0f));
        Assert.Throws<ArgumentException>(() => new SgdMomentum([p], learningRate: -1f));
        Assert.Throws<ArgumentException>(() => new SgdMomentum([p], learningRate: 0.1f, momentum: 1f));
    }
}
