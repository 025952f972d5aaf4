using System.Text.Json.Nodes;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Tests.Data;
using MeProp.Training;

namespace MeProp.Tests.Training;

/// <summary>Exact sparsity in training: applied to the layers, recorded in checkpoints, and read as Off from older ones.</summary>
public class ExactSparsityTrainingTests
{
    private static (DatasetSplit Split, Dataset Test) Data(TempDirectory directory)
    {
        IdxTestFiles.WriteMnistLayout(directory.Path, trainCount: 40, testCount: 15, height: 12, width: 12);
        var mnist = MnistFiles.Load(directory.Path);
        return (DatasetSplit.Create(mnist.Training, devSize: 10), mnist.Test);
    }

    private static TrainOptions Options(ExactSparsity setting, int threads) => new()
    {
        ModelOptions = new MeProp.Models.ModelOptions { Model = "paper-cnn" },
        Epochs = 2, BatchSize = 5, Seed = 4, Threads = threads, DevSize = 10, ExactSparsity = setting,
    };

    [Fact]
    public void Auto_TrainsLikeOff_AndTheSameWithOneAndTwoThreads()
    {
        using var data = new TempDirectory();
        var (split, test) = Data(data);
        var runs = new List<(Trainer Trainer, TrainSummary Summary)>();
        foreach (var (setting, threads) in new[] { (ExactSparsity.Off, 1), (ExactSparsity.Auto, 1), (ExactSparsity.Auto, 2) })
        {
            using var compute = new ComputeContext(threads);
            var trainer = new Trainer(Options(setting, threads), compute, split, test, outDirectory: null);
            Assert.All(trainer.Model.AllLayers.OfType<IMePropLayer>(), l => Assert.Equal(setting, l.ExactSparsity));
            runs.Add((trainer, trainer.Run()));
        }
        var off = runs[0].Trainer.Model.Parameters;
        var auto1 = runs[1].Trainer.Model.Parameters;
        var auto2 = runs[2].Trainer.Model.Parameters;
        // The conv layers' gradients after ReLU and pooling are sparse enough for the sparse kernels.
        Assert.True(runs[1].Trainer.Model.AllLayers.OfType<Conv2d>().All(c => c.Counters.ExactSparseBackwards > 0));
        for (int i = 0; i < off.Count; i++)
        {
            Assert.True(auto1[i].Value.Span.SequenceEqual(auto2[i].Value.Span), $"{off[i].Name}: 1 and 2 threads differ");
            // Two epochs of Adam (16 steps) on sums in another order: the weights drift apart by rounding only.
            TestData.AssertClose(off[i].Value.Span, auto1[i].Value.Span, 1e-3, 1e-3, off[i].Name);
        }
    }

    [Fact]
    public void Checkpoint_RecordsTheSetting_AndAConfigurationWithoutItReadsAsOff()
    {
        using var data = new TempDirectory();
        var (split, test) = Data(data);
        using var output = new TempDirectory();
        using var compute = new ComputeContext(1);
        new Trainer(Options(ExactSparsity.Auto, 1) with { Epochs = 1 }, compute, split, test, output.Path).Run();
        string checkpoint = output.File(Trainer.LastCheckpoint);
        Assert.Equal(ExactSparsity.Auto, Checkpoint.ReadOptions(checkpoint).ExactSparsity);

        // A checkpoint written before the option existed: its configuration has no exact_sparsity.
        var file = SafeTensorsFile.Load(checkpoint);
        var config = JsonNode.Parse(file.Metadata["config"])!.AsObject();
        Assert.True(config.Remove("exact_sparsity"));
        file.Metadata["config"] = config.ToJsonString();
        file.Save(checkpoint);
        Assert.Equal(ExactSparsity.Off, Checkpoint.ReadOptions(checkpoint).ExactSparsity);
    }
}
