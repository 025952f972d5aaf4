using MeProp.Layers;
using MeProp.Losses;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Sparsity;
using MeProp.Tensors;

namespace MeProp.Tests.Training;

/// <summary>
/// A warm training step (forward, loss, backward with meProp, Adam's update fused into the backward)
/// allocates nothing on the calling thread, whichever selection policy the layers use: the selection
/// scratch, the fused update's scratch and the layers' counters are all grown once and reused.
/// </summary>
public class TrainingStepAllocationTests
{
    [Theory]
    [InlineData(null, 0.6, DecayShape.Full, 4)]
    [InlineData(SelectionPolicy.PerExampleChannel, 0.6, DecayShape.Full, 4)]
    [InlineData(SelectionPolicy.Unified, 0.6, DecayShape.Full, 20)]
    [InlineData(SelectionPolicy.Random, 0.0, DecayShape.Full, 4)]
    [InlineData(null, 0.6, DecayShape.ChannelPosition, 4)]
    [InlineData(null, 0.6, DecayShape.Full, 4, 0.8)]
    public void WarmSteps_AllocateNothing(SelectionPolicy? selection, double decay, DecayShape shape, int batch, double? massFraction = null)
    {
        using var compute = new ComputeContext(2);
        var model = ModelBuilder.Build(new ModelOptions { BatchNorm = true }, 1, 12, 12, 10, compute, seed: 5);
        MePropSetup.Attach(model, 0.2, null, decay, shape, selection, ["conv1", "conv2", "fc1"], seed: 5, massFraction);
        foreach (var layer in model.AllLayers.OfType<IMePropLayer>()) layer.Counters.MeasureDensity = true;
        AssertWarmStepsAllocateNothing(model, compute, [batch, 1, 12, 12], seed: 9);
    }

    /// <summary>The same for a network built from a description with every kind of layer the format has.</summary>
    [Theory]
    [InlineData(false, ExactSparsity.Off)]
    [InlineData(true, ExactSparsity.Off)]
    [InlineData(false, ExactSparsity.Auto)]
    [InlineData(true, ExactSparsity.Always)]
    public void WarmStepsOfADescribedNetwork_AllocateNothing(bool meProp, ExactSparsity exactSparsity)
    {
        using var compute = new ComputeContext(2);
        var model = new NetworkBuilder(3, 12, 12)
            .Normalize([0.5f, 0.4f, 0.3f], [0.2f, 0.25f, 0.3f])
            .Conv2d(8, 3, padding: 1).BatchNorm().ReLU()
            .Residual(body => body.Conv2d(16, 3, stride: 2, padding: 1).BatchNorm().Tanh().Conv2d(16, 3, padding: 1).BatchNorm(),
                      shortcut => shortcut.Conv2d(16, 1, stride: 2).BatchNorm())
            .Sigmoid().AvgPool2d(2).MaxPool2d(1).Flatten().Dropout(0.2).Linear(12).BatchNorm().ReLU().Linear(10)
            .Build(classes: 10, compute, seed: 3);
        if (meProp) MePropSetup.Attach(model, 0.2, 0.6, DecayShape.Full, null, ["conv1", "res1.conv2", "res1.shortcut.conv1", "fc1"], seed: 3);
        foreach (var layer in model.AllLayers.OfType<IMePropLayer>()) layer.ExactSparsity = exactSparsity;
        AssertWarmStepsAllocateNothing(model, compute, [6, 3, 12, 12], seed: 4, evaluate: true);
    }

    /// <summary>A multilayer perceptron (the original meProp's), dense and with per-example top-k on its hidden layers, at a fused and an unfused batch size.</summary>
    [Theory]
    [InlineData(false, 10)]
    [InlineData(true, 10)]
    [InlineData(false, 100)]
    [InlineData(true, 100)]
    public void WarmStepsOfAPerceptron_AllocateNothing(bool meProp, int batch)
    {
        using var compute = new ComputeContext(2);
        var model = new NetworkBuilder(1, 28, 28).Flatten().Linear(500).ReLU().Linear(500).ReLU().Linear(500).ReLU().Linear(10)
            .Build(classes: 10, compute, seed: 3);
        if (meProp) MePropSetup.Attach(model, 0.04, 0, DecayShape.Full, null, ["fc1", "fc2", "fc3"], seed: 3);
        foreach (var layer in model.AllLayers.OfType<IMePropLayer>()) layer.ExactSparsity = ExactSparsity.Auto;
        AssertWarmStepsAllocateNothing(model, compute, [batch, 1, 28, 28], seed: 4);
    }

    /// <summary>
    /// Warm training steps of <paramref name="model"/> on one seeded batch of <paramref name="input"/>'s shape
    /// (forward, loss, backward with Adam fused into it, update; with <paramref name="evaluate"/> an
    /// evaluation forward too) allocate nothing on the calling thread.
    /// </summary>
    private static void AssertWarmStepsAllocateNothing(Sequential model, ComputeContext compute, int[] input, ulong seed, bool evaluate = false)
    {
        var adam = new Adam(model.Parameters, compute.Pool) { FuseIntoBackward = true };
        var loss = new SoftmaxCrossEntropy();
        var rng = new Rng(seed);
        var images = TestData.UniformTensor(rng, input);
        var labels = Enumerable.Range(0, input[0]).Select(_ => rng.NextInt(10)).ToArray();
        void Step()
        {
            loss.Forward(model.Forward(images, training: true), labels);
            adam.BeginStep();
            model.Backward(loss.Gradient);
            adam.FinishStep();
            if (evaluate) model.Forward(images, training: false);
        }
        WarmUp.Run(Step);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++) Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated == 0, $"allocated {allocated} bytes in 5 warm steps");
    }
}
