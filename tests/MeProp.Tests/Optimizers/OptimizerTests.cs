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

    /// <summary>
    /// Moments below 1e-30 are stored as zero, in the SIMD body and the scalar tail (length 2·width + 3):
    /// v of a gradient of 1e-20 (1e-43, subnormal) at once, and m (1e-21) after its 0.9^t decay under
    /// zero gradients passes 1e-30 (t ≈ 200); without the flush m would still be about 4e-33 at t = 250.
    /// A moment above the threshold (m = 1e-28) is kept.
    /// </summary>
    [Fact]
    public void Adam_StoresMomentsBelow1em30AsZero()
    {
        int length = 2 * System.Numerics.Vector<float>.Count + 3;
        var tiny = new Parameter("tiny", length);
        var small = new Parameter("small", length);
        using var pool = new WorkerPool(1);
        var adam = new Adam([tiny, small], pool);
        tiny.Gradient.Span.Fill(1e-20f);
        small.Gradient.Span.Fill(1e-27f);
        adam.Update();
        var state = adam.State().ToDictionary(s => s.Name, s => s.State);
        Assert.All(state["tiny.exp_avg_sq"].Span.ToArray(), v => Assert.Equal(0f, v));
        Assert.All(state["tiny.exp_avg"].Span.ToArray(), m => Assert.Equal(0.1f * 1e-20f, m, 1e-27f));
        Assert.All(state["small.exp_avg"].Span.ToArray(), m => Assert.True(m > 9e-29f, $"m = {m} was flushed"));
        for (int t = 0; t < 249; t++) adam.Update();
        Assert.All(state["tiny.exp_avg"].Span.ToArray(), m => Assert.Equal(0f, m));
        Assert.All(state["small.exp_avg"].Span.ToArray(), m => Assert.Equal(0f, m));
    }

    /// <summary>
    /// A phased step (BeginStep; a claimed parameter updated in three ranges from a gradient the caller
    /// holds; FinishStep) gives the same bits as Update, leaves the claimed parameter's Gradient alone,
    /// clears the others, and refuses calls out of order.
    /// </summary>
    [Fact]
    public void Adam_PhasedStepEqualsUpdate()
    {
        var rng = new Rng(74);
        var plain = MakeParameters(rng, 37, 1000);
        var phased = plain.Select(p => { var q = new Parameter(p.Name, p.Value.Length); p.Value.Span.CopyTo(q.Value.Span); return q; }).ToArray();
        using var pool = new WorkerPool(2);
        var plainAdam = new Adam(plain, pool, learningRate: 1e-2f);
        var phasedAdam = new Adam(phased, pool, learningRate: 1e-2f);
        Assert.Throws<InvalidOperationException>(() => phasedAdam.FinishStep());
        for (int t = 0; t < 3; t++)
        {
            var g0 = TestData.Uniform(rng, 37);
            var g1 = TestData.Uniform(rng, 1000);
            g0.CopyTo(plain[0].Gradient.Span); g1.CopyTo(plain[1].Gradient.Span);
            plainAdam.Update();

            g0.CopyTo(phased[0].Gradient.Span);
            phasedAdam.BeginStep();
            Assert.Throws<InvalidOperationException>(() => phasedAdam.BeginStep());
            Assert.Throws<InvalidOperationException>(() => phasedAdam.UpdateRange(phased[1], 0, g1));
            phasedAdam.Claim(phased[1]);
            phasedAdam.UpdateRange(phased[1], 0, g1.AsSpan(0, 5));
            phasedAdam.UpdateRange(phased[1], 500, g1.AsSpan(500));
            phasedAdam.UpdateRange(phased[1], 5, g1.AsSpan(5, 495));
            // A claimed parameter's Gradient is its owner's: FinishStep must neither read nor clear it.
            phased[1].Gradient.Span.Fill(0.5f);
            phasedAdam.FinishStep();
            Assert.False(phasedAdam.StepInProgress);

            for (int i = 0; i < 2; i++) Assert.True(plain[i].Value.Span.SequenceEqual(phased[i].Value.Span), $"step {t}: {plain[i].Name} differs");
            Assert.True(phased[0].Gradient.Span.IndexOfAnyExcept(0f) < 0, "unclaimed gradient not cleared");
            Assert.True(phased[1].Gradient.Span.IndexOfAnyExcept(0.5f) < 0, "claimed gradient was cleared or written");
            phased[1].Gradient.Span.Clear();
        }
        Assert.Equal(plainAdam.Step, phasedAdam.Step);
        var a = plainAdam.State().ToArray();
        var b = phasedAdam.State().ToArray();
        for (int i = 0; i < a.Length; i++) Assert.True(a[i].State.Span.SequenceEqual(b[i].State.Span), $"{a[i].Name} differs");
    }
}
