using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Sparsity;
using MeProp.Tests.Data;
using MeProp.Tensors;
using MeProp.Training;
using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Training;

/// <summary>The library's own path: a model built in C#, meProp on chosen layers, the caller's optimizer, a Trainer.</summary>
[Collection("Console")]
public class TrainerApiTests
{
    /// <summary>40 training images of 8x8 (the first 10 the dev split, 30 to train on) and 15 test images, in a temporary directory.</summary>
    private static (TempDirectory Directory, ImageData Images, DatasetSplit Split) TinyMnist()
    {
        var directory = new TempDirectory();
        IdxTestFiles.WriteMnistLayout(directory.Path, trainCount: 40, testCount: 15, height: 8, width: 8);
        var images = MnistFiles.Load(directory.Path);
        return (directory, images, DatasetSplit.Create(images.Training, devSize: 10));
    }

    [Fact]
    public void TrainsACallersModelAndItsCheckpointRebuildsAndResumesIt()
    {
        var (data, mnist, split) = TinyMnist();
        using var _ = data;
        using var compute = new ComputeContext(1);
        var network = new NetworkBuilder(1, 8, 8)
            .Conv2d(6, 3, padding: 1).ReLU().MaxPool2d(2)
            .Conv2d(8, 3, padding: 1, name: "features").ReLU().GlobalAvgPool2d().Linear(10);
        (Sequential Model, Conv2d Features) Build()
        {
            var model = network.Build(classes: 10, compute, seed: 3);
            var features = (Conv2d)model.Layer("features");
            features.Sparsifier = new GradientSparsifier("features", new MePropOptions { Ratio = 0.25, Decay = 0.6 }, convolutional: true, seed: 3);
            return (model, features);
        }
        TrainSummary Train(Sequential model, int epochs, string directory) =>
            new Trainer(model, new Adam(model.Parameters, compute.Pool, learningRate: 3e-3f), new TrainOptions { Epochs = epochs, BatchSize = 5, Seed = 3, Threads = 1, DevSize = 10, TopK = 0.5 },
                compute, split, mnist.Test, directory).Run();
        using var output = new TempDirectory();
        string whole = output.File("whole"), parts = output.File("parts");
        var (trained, features) = Build();
        Assert.Equal(2, Train(trained, 2, whole).EpochsCompleted);
        Assert.True(features.Counters.Gradient.KeptFraction is > 0 and < 0.5);

        // The checkpoint records the network with the meProp attached by hand and the caller's optimizer, not
        // TrainOptions' meProp (unused) and optimizer defaults: the model comes back from the file alone.
        string last = Path.Combine(whole, Trainer.LastCheckpoint);
        var options = Checkpoint.ReadOptions(last);
        Assert.Equal(new LayerMePropSpec { Ratio = 0.25, Decay = 0.6, Selection = "per-channel" }, options.ModelOptions.Network!.Layers.Single(l => l.Name == "features").MeProp);
        Assert.Null(options.TopK);
        Assert.Equal(("adam", 3e-3f), (options.Optimizer, options.LearningRate));
        var rebuilt = ModelBuilder.Build(options.ModelOptions, 1, 8, 8, 10, compute, seed: 99);
        Assert.Equal(features.Sparsifier!.Options, ((Conv2d)rebuilt.Layer("features")).Sparsifier!.Options);
        Assert.Single(rebuilt.AllLayers.OfType<IMePropLayer>(), l => l.Sparsifier is not null);
        Checkpoint.Load(last, rebuilt, optimizer: null);
        foreach (var (a, b) in trained.Parameters.Zip(rebuilt.Parameters))
            Assert.True(a.Value.Span.SequenceEqual(b.Value.Span), $"{a.Name} differs");

        // `meprop train --resume` of a run trained in part through the library continues it exactly.
        Assert.Equal(1, Train(Build().Model, 1, parts).EpochsCompleted);
        var resumed = Run("train", "--resume", parts, "--epochs", "2", "--data", data.Path);
        Assert.True(resumed.Code == 0, resumed.Stderr);
        AssertSameRun(whole, parts, "after the CLI resume");

        // Resuming into a model without that meProp would train dense: refused.
        var dense = NetworkFactory.Build(trained.Spec!, compute, seed: 3);
        var error = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Load(last, dense, new Adam(dense.Parameters, compute.Pool, learningRate: 3e-3f)));
        Assert.Contains("meProp on layer 'features'", error.Message);

        // A full checkpoint without a meProp layer's generator state is not of that run.
        var file = SafeTensorsFile.Load(last);
        file.Metadata.Remove("features.meprop.rng");
        string withoutRng = output.File("without-rng.safetensors");
        file.Save(withoutRng);
        var missing = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Load(withoutRng, rebuilt, optimizer: null));
        Assert.Contains("features.meprop.rng", missing.Message);
    }

    [Fact]
    public void ALastBatchOfOneImageIsRefusedUpFrontWhereBatchNormHasOnlyTheBatch()
    {
        var (data, mnist, split) = TinyMnist();
        using var _ = data;
        using var compute = new ComputeContext(1);
        Trainer For(NetworkBuilder network, int batchSize)
        {
            var model = network.Build(classes: 10, compute, seed: 1);
            return new Trainer(model, new Adam(model.Parameters, compute.Pool), new TrainOptions { Epochs = 1, BatchSize = batchSize, Threads = 1, DevSize = 10 }, compute, split, mnist.Test, null);
        }
        NetworkBuilder Flat() => new NetworkBuilder(1, 8, 8).Flatten().Linear(12).BatchNorm(name: "features").ReLU().Linear(10);
        NetworkBuilder Convolutional() => new NetworkBuilder(1, 8, 8).Conv2d(4, 3, padding: 1).BatchNorm().ReLU().Flatten().Linear(10);

        var error = Assert.Throws<ArgumentException>(() => For(Flat(), 29));
        Assert.Contains("features", error.Message);
        Assert.Contains("a batch of 1 image", error.Message);
        Assert.Throws<ArgumentException>(() => For(Flat(), 1));
        Assert.Equal(1, For(Flat(), 7).Run().EpochsCompleted);          // last batch of 2
        Assert.Equal(1, For(Convolutional(), 29).Run().EpochsCompleted); // 64 values per channel in one image
    }

    [Fact]
    public void SettingsTheRunWouldIgnoreAreRefused()
    {
        var (data, mnist, split) = TinyMnist();
        using var _ = data;
        using var compute = new ComputeContext(1);
        var model = new NetworkBuilder(1, 8, 8).Conv2d(4, 3, padding: 1).ReLU().Flatten().Linear(10).Build(classes: 10, compute, seed: 1);
        var scheduled = new TrainOptions { Epochs = 2, BatchSize = 5, Threads = 1, DevSize = 10, TopKSchedule = new TopKSchedule { DenseWarmup = 1 } };
        var dense = Assert.Throws<ArgumentException>(() => new Trainer(model, new Adam(model.Parameters, compute.Pool), scheduled, compute, split, mnist.Test, null));
        Assert.Contains("schedule", dense.Message);
        ((Conv2d)model.Layer("conv1")).Sparsifier = new GradientSparsifier("conv1", new MePropOptions { Ratio = 0.5 }, convolutional: true, seed: 1);
        Assert.Equal(2, new Trainer(model, new Adam(model.Parameters, compute.Pool), scheduled, compute, split, mnist.Test, null).Run().EpochsCompleted);
        Assert.Throws<ArgumentException>(() => new Trainer(model, new Adam(model.Parameters, compute.Pool), scheduled with { Epochs = 0 }, compute, split, mnist.Test, null));
    }

    [Fact]
    public void WeightsMadeNonFiniteByAnEpochsLastUpdateAreNotSaved()
    {
        var (data, mnist, split) = TinyMnist();
        using var _ = data;
        using var compute = new ComputeContext(1);
        var model = new NetworkBuilder(1, 8, 8).Flatten().Linear(10).Build(classes: 10, compute, seed: 1);
        using var output = new TempDirectory();
        var trainer = new Trainer(model, new PoisonAtStep(model.Parameters, 6), new TrainOptions { Epochs = 2, BatchSize = 5, Threads = 1, DevSize = 10 }, compute, split, mnist.Test, output.Path);
        var error = Assert.Throws<InvalidOperationException>(() => trainer.Run());
        Assert.Contains("fc1.weight holds NaN or infinity after epoch 1", error.Message);
        Assert.False(File.Exists(output.File(Trainer.LastCheckpoint)));
        Assert.False(File.Exists(output.File(Trainer.MetricsFile)));
    }

    /// <summary>Plain SGD that writes a NaN into the first parameter at one step (every loss before it is finite).</summary>
    private sealed class PoisonAtStep(IReadOnlyList<Parameter> parameters, long poisonedStep) : IOptimizer
    {
        public long Step { get; private set; }

        public void Update()
        {
            Step++;
            foreach (var p in parameters)
            {
                var value = p.Value.Span;
                var gradient = p.Gradient.Span;
                for (int i = 0; i < value.Length; i++) value[i] -= 0.01f * gradient[i];
                gradient.Clear();
            }
            if (Step == poisonedStep) parameters[0].Value.Span[0] = float.NaN;
        }

        public IEnumerable<(string Name, Tensor State)> State() => [];
        public void RestoreStep(long step) => Step = step;
    }

    /// <summary>Passes values through; its backward throws on one call (counted over the layer's life) while <see cref="Armed"/>.</summary>
    private sealed class FailingBackward(string name, int failingCall) : ILayer
    {
        private int _calls;
        public bool Armed { get; set; } = true;
        public string Name { get; } = name;
        public IReadOnlyList<Parameter> Parameters => [];
        public bool ComputeInputGradient { get; set; } = true;
        public int[] OutputShape(ReadOnlySpan<int> inputShape) => inputShape.ToArray();
        public Tensor Forward(Tensor input, bool training) => input;

        public Tensor? Backward(Tensor outputGradient)
        {
            if (++_calls == failingCall && Armed) throw new IOException($"{Name}: backward call {_calls} failed");
            return outputGradient;
        }
    }

    [Theory]
    [InlineData("adam")]
    [InlineData("sgd")]
    public void AnEpochThatThrowsClosesTheOptimizersStepAndTheTrainerGoesOnOnlyFromAResume(string optimizerKind)
    {
        var (data, mnist, split) = TinyMnist();
        using var _ = data;
        using var compute = new ComputeContext(1);
        var options = new TrainOptions { Epochs = 2, BatchSize = 5, Seed = 2, Threads = 1, DevSize = 10 };
        // 30 training images in batches of 5: the 8th backward is epoch 2's second step. fc2's gradient
        // (and with Adam its fused update) is done when the layer below it throws; SGD leaves it added in.
        (Sequential Model, IOptimizer Optimizer, FailingBackward Failing) Build()
        {
            var rng = new Rng(2);
            var failing = new FailingBackward("failing", failingCall: 8);
            var model = new Sequential([new Flatten("flatten"), new Linear("fc1", 64, 12, compute, rng), failing,
                new Activation("act", ActivationKind.Relu), new Linear("fc2", 12, 10, compute, rng)]);
            IOptimizer optimizer = optimizerKind == "adam" ? new Adam(model.Parameters, compute.Pool, learningRate: 3e-3f) : new SgdMomentum(model.Parameters, 0.05f);
            return (model, optimizer, failing);
        }
        using var output = new TempDirectory();
        string whole = output.File("whole"), parts = output.File("parts");
        var straight = Build();
        straight.Failing.Armed = false;
        new Trainer(straight.Model, straight.Optimizer, options, compute, split, mnist.Test, whole).Run();

        var (model, optimizer, failing) = Build();
        var trainer = new Trainer(model, optimizer, options, compute, split, mnist.Test, parts);
        Assert.Contains("backward call 8 failed", Assert.Throws<IOException>(() => trainer.Run()).Message);
        if (optimizer is Adam adam) Assert.False(adam.StepInProgress);
        // The weights are part-way through epoch 2: going on from them is refused.
        Assert.Contains("Resume", Assert.Throws<InvalidOperationException>(() => trainer.Run()).Message);
        trainer.Resume(Path.Combine(parts, Trainer.LastCheckpoint));
        Assert.Equal(2, trainer.Run().EpochsCompleted);
        AssertSameRun(whole, parts, "after the failed epoch and the resume");
    }

    [Fact]
    public void AResumeRefusedPartWayLeavesTheModelAndOptimizerAsTheyWere()
    {
        var (data, mnist, split) = TinyMnist();
        using var _ = data;
        using var compute = new ComputeContext(1);
        var network = new NetworkBuilder(1, 8, 8).Conv2d(4, 3, padding: 1).ReLU().Flatten().Linear(10);
        var options = new TrainOptions { Epochs = 1, BatchSize = 5, Seed = 4, Threads = 1, DevSize = 10 };
        using var output = new TempDirectory();
        var trained = network.Build(classes: 10, compute, seed: 4);
        new Trainer(trained, new Adam(trained.Parameters, compute.Pool), options, compute, split, mnist.Test, output.Path).Run();

        // An Adam run's checkpoint holds no momentum buffers: SGD's resume is refused once the weights are copied.
        var model = network.Build(classes: 10, compute, seed: 5);
        var sgd = new SgdMomentum(model.Parameters, 0.01f, 0.9f);
        foreach (var (_, buffer) in sgd.State()) buffer.Span.Fill(0.25f);
        var before = model.Parameters.Select(p => p.Value.Span.ToArray()).ToArray();
        var error = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Load(output.File(Trainer.LastCheckpoint), model, sgd));
        Assert.Contains("momentum", error.Message);
        foreach (var (parameter, values) in model.Parameters.Zip(before))
            Assert.True(parameter.Value.Span.SequenceEqual(values), $"{parameter.Name} was overwritten");
        Assert.All(sgd.State(), s => Assert.All(s.State.Span.ToArray(), v => Assert.Equal(0.25f, v)));
        Assert.Equal(0, sgd.Step);
    }

    [Fact]
    public void ResumeRefusesACheckpointOfAnotherConfigurationNamingWhatDiffers()
    {
        var (data, mnist, split) = TinyMnist();
        using var _ = data;
        using var compute = new ComputeContext(1);
        var network = new NetworkBuilder(1, 8, 8).Flatten().Linear(10);
        var options = new TrainOptions { Epochs = 1, BatchSize = 5, Seed = 4, Threads = 1, DevSize = 10 };
        using var output = new TempDirectory();
        var trained = network.Build(classes: 10, compute, seed: 4);
        new Trainer(trained, new Adam(trained.Parameters, compute.Pool), options, compute, split, mnist.Test, output.File("run")).Run();
        string last = Path.Combine(output.File("run"), Trainer.LastCheckpoint);

        Trainer With(TrainOptions o)
        {
            var model = network.Build(classes: 10, compute, seed: 4);
            return new Trainer(model, new Adam(model.Parameters, compute.Pool), o, compute, split, mnist.Test, null);
        }
        var error = Assert.Throws<ArgumentException>(() => With(options with { Seed = 5, BatchSize = 6 }).Resume(last));
        Assert.Contains("seed", error.Message);
        Assert.Contains("batch_size", error.Message);
        // More epochs, other threads, no fused update: the same results, so the same run.
        var more = With(options with { Epochs = 2, Threads = 2, FusedUpdate = false });
        more.Resume(last);
        Assert.Equal(2, more.Run().EpochsCompleted);
    }

    [Fact]
    public void AfterAScheduledRunEachLayerHasItsOwnRatioAgainAndAResumeWithTheModelIsTheSameRun()
    {
        var (data, mnist, split) = TinyMnist();
        using var _ = data;
        using var compute = new ComputeContext(1);
        var model = new NetworkBuilder(1, 8, 8).Conv2d(4, 3, padding: 1).ReLU().Flatten().Linear(10).Build(classes: 10, compute, seed: 6);
        var conv = (Conv2d)model.Layer("conv1");
        conv.Sparsifier = new GradientSparsifier("conv1", new MePropOptions { Ratio = 0.5 }, convolutional: true, seed: 6);
        var options = new TrainOptions { Epochs = 2, BatchSize = 5, Seed = 6, Threads = 1, DevSize = 10, TopKSchedule = TopKSchedule.Parse("linear:0.4:0.1") with { DenseWarmup = 1 } };
        using var output = new TempDirectory();
        var adam = new Adam(model.Parameters, compute.Pool);
        new Trainer(model, adam, options, compute, split, mnist.Test, output.Path).Run();
        Assert.Equal(0.5, conv.Sparsifier.Ratio);
        Assert.False(conv.Sparsifier.KeepAll);
        // The same model in a new trainer is the run's configuration, so its checkpoint resumes.
        var longer = new Trainer(model, adam, options with { Epochs = 3 }, compute, split, mnist.Test, null);
        longer.Resume(Path.Combine(output.Path, Trainer.LastCheckpoint));
        Assert.Equal(3, longer.Run().EpochsCompleted);
    }
}
