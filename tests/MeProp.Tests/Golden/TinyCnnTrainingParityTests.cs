using MeProp.Layers;
using MeProp.Losses;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Tensors;

namespace MeProp.Tests.Golden;

/// <summary>
/// A golden training run: the fixture's tiny CNN (both in float32) built from our layers, started from
/// PyTorch's initial weights, trained 5 steps with Adam on mean cross-entropy. Tolerances: first
/// logits 1e-5 + 1e-4·|torch|; each step's loss within 1e-4 relative; final weights within 1e-4
/// absolute (Adam moves each weight by up to lr = 1e-2 per step, so a wrong gradient shows up at
/// ~1e-3 or more).
/// </summary>
public class TinyCnnTrainingParityTests
{
    private static Sequential Build(ComputeContext compute)
    {
        var rng = new Rng(1); // overwritten by the fixture's initial weights
        return new Sequential(
        [
            new Conv2d("conv1", 1, 2, 3, 1, 1, compute, rng),
            new Activation("act1", ActivationKind.Relu),
            new MaxPool2d("pool1", 2, compute),
            new Conv2d("conv2", 2, 3, 3, 1, 1, compute, rng),
            new Activation("act2", ActivationKind.Relu),
            new MaxPool2d("pool2", 2, compute),
            new Flatten("flatten"),
            new Linear("fc1", 12, 5, compute, rng),
            new Activation("act3", ActivationKind.Relu),
            new Linear("fc2", 5, 4, compute, rng),
        ]);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void FiveAdamStepsMatchPyTorch(int threads)
    {
        var f = GoldenFixture.Load("tiny_cnn_training.json");
        int steps = (int)f.Param("steps"), batch = (int)f.Param("batch");
        using var compute = new ComputeContext(threads);
        var model = Build(compute);
        Assert.Equal(8, model.Parameters.Count);
        foreach (var p in model.Parameters)
        {
            Assert.Equal(f.Shape(p.Name), p.Value.ShapeArray());
            f.Data(p.Name).CopyTo(p.Value.Span);
        }
        var adam = new Adam(model.Parameters, compute.Pool, (float)f.Param("lr"), (float)f.Param("beta1"),
            (float)f.Param("beta2"), (float)f.Param("eps"));
        var loss = new SoftmaxCrossEntropy();
        float[] inputs = f.Data("inputs");
        int[] labels = Array.ConvertAll(f.DataDouble("labels"), v => (int)v);
        double[] expectedLosses = f.DataDouble("losses");
        int imageSize = 8 * 8;
        Assert.Equal(steps * batch * imageSize, inputs.Length);

        var losses = new double[steps];
        for (int s = 0; s < steps; s++)
        {
            var x = new Tensor(inputs.AsSpan(s * batch * imageSize, batch * imageSize).ToArray(), batch, 1, 8, 8);
            var logits = model.Forward(x, training: true);
            if (s == 0)
            {
                Assert.Equal(f.Shape("logits_step0"), logits.ShapeArray());
                TestData.AssertClose(f.Data("logits_step0"), logits.Span, 1e-5, 1e-4, "logits at step 0");
            }
            losses[s] = loss.Forward(logits, labels.AsSpan(s * batch, batch));
            model.Backward(loss.Gradient);
            adam.Update();
        }
        TestData.AssertClose(expectedLosses, losses, 0, 1e-4, "losses");
        foreach (var p in model.Parameters)
            TestData.AssertClose(f.Data("final." + p.Name), p.Value.Span, 1e-4, 0, "final " + p.Name);
        // The run must have moved every weight tensor away from the start, or the comparison above proves little.
        foreach (var p in model.Parameters)
            Assert.Contains(Enumerable.Range(0, p.Value.Length), i => Math.Abs(p.Value.Span[i] - f.Data(p.Name)[i]) > 1e-3);
    }
}
