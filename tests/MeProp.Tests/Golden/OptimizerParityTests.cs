using MeProp.Layers;
using MeProp.Optimizers;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Tests.Golden;

/// <summary>
/// Adam and SGD with momentum against torch.optim over three steps (gradient g_t applied at step t,
/// p_t the parameter after it). The tolerance is tight because an update is small next to the
/// parameter (Adam moves p by ~1e-3): Adam |ours - torch| &lt;= 1e-6 + 1e-6·|torch| (0.1% of a step);
/// SGD 1e-5 + 1e-5·|torch| (its steps are ~0.1 to 1).
/// </summary>
public class OptimizerParityTests
{
    private static Parameter Start(GoldenFixture f)
    {
        var p = new Parameter("p", f.Shape("p0"));
        f.Data("p0").CopyTo(p.Value.Span);
        return p;
    }

    private static void RunThreeSteps(GoldenFixture f, Parameter p, IOptimizer optimizer, double absolute, double relative)
    {
        for (int t = 1; t <= 3; t++)
        {
            f.Data($"g{t}").CopyTo(p.Gradient.Span);
            optimizer.Update();
            Assert.Equal(t, optimizer.Step);
            TestData.AssertClose(f.Data($"p{t}"), p.Value.Span, absolute, relative, $"{f.FileName} p{t}");
            Assert.All(p.Gradient.Span.ToArray(), g => Assert.Equal(0f, g));
        }
    }

    [Fact]
    public void Adam()
    {
        var f = GoldenFixture.Load("adam_steps.json");
        var p = Start(f);
        using var pool = new WorkerPool(1);
        var adam = new Adam([p], pool, (float)f.Param("lr"), (float)f.Param("beta1"), (float)f.Param("beta2"), (float)f.Param("eps"));
        RunThreeSteps(f, p, adam, 1e-6, 1e-6);
    }

    [Fact]
    public void SgdMomentum()
    {
        var f = GoldenFixture.Load("sgd_momentum_steps.json");
        var p = Start(f);
        var sgd = new SgdMomentum([p], (float)f.Param("lr"), (float)f.Param("momentum"));
        RunThreeSteps(f, p, sgd, 1e-5, 1e-5);
    }
}
