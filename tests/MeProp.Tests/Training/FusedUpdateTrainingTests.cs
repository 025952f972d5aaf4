using MeProp.Layers;
using MeProp.Losses;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Sparsity;
using MeProp.Tensors;

namespace MeProp.Tests.Training;

/// <summary>
/// Adam's update fused into the dense Linear backward (<see cref="Adam.FuseIntoBackward"/>) against the
/// plain Backward + Update, on the paper's CNN at 12x12 (fc1 576 x 1024, four 256-row groups) trained
/// a few steps at batch 10: parameters and Adam's moments must be equal bit for bit, with batch norm
/// and with meProp on the conv layers too, since the fused kernel sums in the dense product's order.
/// </summary>
public class FusedUpdateTrainingTests
{
    private const int Batch = 10, Size = 12, Steps = 4;

    private static (Sequential Model, Adam Adam, ComputeContext Compute) Build(bool batchNorm, bool meProp, bool fused, int threads)
    {
        var compute = new ComputeContext(threads);
        var model = ModelBuilder.Build(new ModelOptions { BatchNorm = batchNorm }, 1, Size, Size, 10, compute, seed: 5);
        if (meProp) MePropSetup.Attach(model, 0.2, 0.6, DecayShape.Full, null, null, seed: 5);
        var adam = new Adam(model.Parameters, compute.Pool);
        adam.FuseIntoBackward = fused;
        return (model, adam, compute);
    }

    [Theory]
    [InlineData(false, false, 2)]
    [InlineData(true, false, 2)]
    [InlineData(false, true, 2)]
    [InlineData(true, true, 3)]
    [InlineData(true, true, 1)]
    public void FusedAndPlainTrainingGiveIdenticalBits(bool batchNorm, bool meProp, int threads)
    {
        var (plainModel, plainAdam, plainCompute) = Build(batchNorm, meProp, fused: false, threads);
        var (fusedModel, fusedAdam, fusedCompute) = Build(batchNorm, meProp, fused: true, threads);
        using var disposePlain = plainCompute;
        using var disposeFused = fusedCompute;
        var fc1 = (Linear)fusedModel.Layer("fc1");
        var loss = new SoftmaxCrossEntropy();
        var rng = new Rng(9);
        for (int step = 0; step < Steps; step++)
        {
            var images = TestData.UniformTensor(rng, Batch, 1, Size, Size);
            var labels = Enumerable.Range(0, Batch).Select(_ => rng.NextInt(10)).ToArray();

            loss.Forward(plainModel.Forward(images, training: true), labels);
            plainModel.Backward(loss.Gradient);
            plainAdam.Update();

            loss.Forward(fusedModel.Forward(images, training: true), labels);
            fusedAdam.BeginStep();
            fusedModel.Backward(loss.Gradient);
            Assert.True(fc1.Weight.Gradient.Span.IndexOfAnyExcept(0f) < 0, "fc1's gradient was stored: the backward was not fused");
            Assert.True(fc1.Bias.Gradient.Span.IndexOfAnyExcept(0f) < 0, "fc1's bias was left to FinishStep: its gradient-ready report went unheard");
            fusedAdam.FinishStep();
        }
        for (int i = 0; i < plainModel.Parameters.Count; i++)
            Assert.True(plainModel.Parameters[i].Value.Span.SequenceEqual(fusedModel.Parameters[i].Value.Span), $"{plainModel.Parameters[i].Name} differs");
        var plainState = plainAdam.State().ToArray();
        var fusedState = fusedAdam.State().ToArray();
        for (int i = 0; i < plainState.Length; i++)
            Assert.True(plainState[i].State.Span.SequenceEqual(fusedState[i].State.Span), $"{plainState[i].Name} differs");
    }

    /// <summary>Outside an optimizer step (gradient checks, `meprop stats`) a fused layer's Backward is the plain one: it fills the gradients and updates nothing.</summary>
    [Fact]
    public void BackwardOutsideAStepIsPlain()
    {
        using var compute = new ComputeContext(2);
        var rng = new Rng(10);
        var plain = new Linear("fc", 37, 300, compute, new Rng(3));
        var fused = new Linear("fc", 37, 300, compute, new Rng(3));
        var adam = new Adam(fused.Parameters, compute.Pool) { FuseIntoBackward = true };
        Assert.True(adam.FuseIntoBackward);
        var x = TestData.UniformTensor(rng, 5, 37);
        var dy = TestData.UniformTensor(rng, 5, 300);
        plain.Forward(x, training: true);
        var dxPlain = plain.Backward(dy)!.Span.ToArray();
        fused.Forward(x, training: true);
        var dxFused = fused.Backward(dy)!.Span.ToArray();
        Assert.Equal(dxPlain, dxFused);
        for (int i = 0; i < plain.Parameters.Count; i++)
        {
            Assert.True(plain.Parameters[i].Value.Span.SequenceEqual(fused.Parameters[i].Value.Span), $"{plain.Parameters[i].Name} was updated");
            Assert.True(plain.Parameters[i].Gradient.Span.SequenceEqual(fused.Parameters[i].Gradient.Span), $"{plain.Parameters[i].Name} gradient differs");
        }
    }

    /// <summary>
    /// A gradient left by a backward outside the step is part of the step's gradient, as with the plain
    /// update (that weight is then not fused, the product could not read it); a second backward inside a
    /// fused step throws, as the first one's update has been applied.
    /// </summary>
    [Fact]
    public void AGradientFromOutsideTheStepCountsAndASecondBackwardInTheStepThrows()
    {
        using var compute = new ComputeContext(2);
        var rng = new Rng(11);
        var plain = new Linear("fc", 37, 300, compute, new Rng(3));
        var fused = new Linear("fc", 37, 300, compute, new Rng(3));
        var late = new Linear("fc", 37, 300, compute, new Rng(3));
        var plainAdam = new Adam(plain.Parameters, compute.Pool);
        var fusedAdam = new Adam(fused.Parameters, compute.Pool) { FuseIntoBackward = true };
        var lateAdam = new Adam(late.Parameters, compute.Pool);
        var x1 = TestData.UniformTensor(rng, 5, 37);
        var x2 = TestData.UniformTensor(rng, 5, 37);
        var dy1 = TestData.UniformTensor(rng, 5, 300);
        var dy2 = TestData.UniformTensor(rng, 5, 300);

        plain.Forward(x1, training: true);
        plain.Backward(dy1);
        plain.Forward(x2, training: true);
        plain.Backward(dy2);
        plainAdam.Update();

        fused.Forward(x1, training: true);
        fused.Backward(dy1);
        fusedAdam.BeginStep();
        fused.Forward(x2, training: true);
        fused.Backward(dy2);
        fusedAdam.FinishStep();
        // The same with the hook set only after the first backward (a gradient check, then training).
        late.Forward(x1, training: true);
        late.Backward(dy1);
        lateAdam.FuseIntoBackward = true;
        lateAdam.BeginStep();
        late.Forward(x2, training: true);
        late.Backward(dy2);
        lateAdam.FinishStep();
        for (int i = 0; i < plain.Parameters.Count; i++)
        {
            Assert.True(plain.Parameters[i].Value.Span.SequenceEqual(fused.Parameters[i].Value.Span), $"{plain.Parameters[i].Name} differs");
            Assert.True(plain.Parameters[i].Value.Span.SequenceEqual(late.Parameters[i].Value.Span), $"{plain.Parameters[i].Name} differs (hook set late)");
        }

        // The next step is fused again (the outside gradient was applied and cleared), and takes one backward.
        fusedAdam.BeginStep();
        fused.Forward(x1, training: true);
        fused.Backward(dy1);
        Assert.True(fused.Weight.Gradient.Span.IndexOfAnyExcept(0f) < 0, "the weight's update was not fused");
        fused.Forward(x2, training: true);
        var error = Assert.Throws<InvalidOperationException>(() => fused.Backward(dy2));
        Assert.Contains("fc.weight was updated in this step's backward already", error.Message);
    }
}
