using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Sparsity;
using MeProp.Tests.Data;
using MeProp.Training;
using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Training;

/// <summary>
/// Whole training runs at 1, 2 and 3 threads give the same metrics and weights to the bit, on shapes that reach
/// the paths whose split of the work follows the thread count (odd widths, long depths, small batches).
/// </summary>
public class ThreadCountDeterminismTests
{
    public static TheoryData<string, TrainOptions> Configurations => new()
    {
        // The MLP's first layer sums 1,024 inputs into 201 outputs at batch 7 (a small-batch product over a long depth).
        { "mlp", new TrainOptions { ModelOptions = new ModelOptions { Model = "mlp", HiddenSize = 201 }, TopK = 0.1, MePropLayers = ["fc1"] } },
        { "paper-cnn-bn", new TrainOptions { ModelOptions = new ModelOptions { Model = "paper-cnn", BatchNorm = true }, TopK = 0.1, Decay = 0.6 } },
        { "paper-cnn-channel", new TrainOptions { ModelOptions = new ModelOptions { Model = "paper-cnn" }, TopK = 0.3, Selection = SelectionPolicy.Channel, FusedUpdate = false } },
        { "residual", new TrainOptions { ModelOptions = new ModelOptions { Model = "residual", Network = Residual() }, TopK = 0.05, Decay = 0.6, ZeroMean = true } },
    };

    /// <summary>A small residual network (batch norm, a strided block with a conv shortcut, average pooling) with top-k on every conv.</summary>
    private static NetworkSpec Residual() => new NetworkBuilder(1, 32, 32)
        .Conv2d(8, 3, padding: 1).BatchNorm().ReLU()
        .Residual(body => body.Conv2d(8, 3, padding: 1).BatchNorm().ReLU().Conv2d(8, 3, padding: 1).BatchNorm()).ReLU()
        .Residual(body => body.Conv2d(16, 3, stride: 2, padding: 1).BatchNorm().ReLU().Conv2d(16, 3, padding: 1).BatchNorm(),
            shortcut => shortcut.Conv2d(16, 1, stride: 2).BatchNorm()).ReLU()
        .AvgPool2d(2).GlobalAvgPool2d().Linear(10)
        .Spec(classes: 10);

    [Theory]
    [MemberData(nameof(Configurations))]
    public void TrainingDoesNotDependOnTheThreadCount(string label, TrainOptions configuration)
    {
        using var data = new TempDirectory();
        IdxTestFiles.WriteMnistLayout(data.Path, trainCount: 40, testCount: 9, height: 32, width: 32);
        var images = MnistFiles.Load(data.Path);
        var split = DatasetSplit.Create(images.Training, devSize: 12);
        using var output = new TempDirectory();
        foreach (int threads in new[] { 1, 2, 3 })
        {
            var options = configuration with { Epochs = 2, BatchSize = 7, Seed = 3, DevSize = 12, Threads = threads };
            using (var compute = new ComputeContext(threads)) new Trainer(options, compute, split, images.Test, output.File($"{threads}")).Run();
            if (threads > 1) AssertSameRun(output.File("1"), output.File($"{threads}"), $"({label}) at {threads} threads");
        }
    }
}
