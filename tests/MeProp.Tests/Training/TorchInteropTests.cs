using System.Text.Json;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Sparsity;
using MeProp.Tensors;
using MeProp.Tests.Data;
using MeProp.Tests.Golden;
using MeProp.Training;

namespace MeProp.Tests.Training;

/// <summary>
/// PyTorch both ways, against fixtures of scripts/make_golden_fixtures.py (Fixtures/torch): a state_dict PyTorch
/// wrote loads into our model and gives PyTorch's eval logits; our model-only checkpoint (best.safetensors)
/// holds exactly the keys, dtypes and shapes of the PyTorch module's state_dict (what
/// load_state_dict(strict=True) checks), while the training state stays in last.safetensors.
/// </summary>
public class TorchInteropTests
{
    private static string FixturePath(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "torch", name);

    private static Sequential PaperCnn(bool batchNorm, int size, ComputeContext compute) =>
        ModelBuilder.Build(new ModelOptions { BatchNorm = batchNorm }, 1, size, size, 10, compute, seed: 5);

    private static NetworkSpec TinyResnetSpec()
    {
        using var keys = JsonDocument.Parse(File.ReadAllText(FixturePath("torch_state_dict_keys.json")));
        return NetworkSpec.Parse(keys.RootElement.GetProperty("specs").GetProperty("tiny-resnet").GetRawText(), "torch_state_dict_keys.json");
    }

    /// <summary>name -> (dtype, shape) of the PyTorch module's state_dict, from the fixture.</summary>
    private static SortedDictionary<string, string> TorchKeys(string network)
    {
        using var keys = JsonDocument.Parse(File.ReadAllText(FixturePath("torch_state_dict_keys.json")));
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in keys.RootElement.GetProperty("networks").GetProperty(network).EnumerateObject())
            result[entry.Name] = Describe(entry.Value.GetProperty("dtype").GetString()!,
                entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()));
        return result;
    }

    private static string Describe(string dtype, IEnumerable<int> shape) => $"{dtype} [{string.Join(", ", shape)}]";

    private static SortedDictionary<string, string> FileKeys(string path)
    {
        var file = SafeTensorsFile.Load(path);
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (string name in file.Names)
            result[name] = Describe(file.GetDType(name) == SafeTensorsDType.F32 ? "float32" : "int64", file.GetShape(name));
        return result;
    }

    [Theory]
    [InlineData("paper_cnn_8x8")]
    [InlineData("paper_cnn_bn_8x8")]
    [InlineData("tiny_resnet")]
    public void PyTorchStateDict_LoadsStrictly_AndGivesPyTorchsEvalLogits(string label)
    {
        var fixture = GoldenFixture.Parse(File.ReadAllText(FixturePath($"torch_logits_{label}.json")), $"torch_logits_{label}.json");
        using var compute = new ComputeContext(2);
        // The paper's CNN through ModelBuilder (on 8x8 images: fc1 is 64*2*2 -> 1024, to keep the fixture small).
        var model = label == "tiny_resnet" ? NetworkFactory.Build(TinyResnetSpec(), compute, seed: 5) : PaperCnn(label.Contains("_bn"), 8, compute);

        Checkpoint.LoadWeights(FixturePath($"torch_weights_{label}.safetensors"), model);

        var batchNorms = model.AllLayers.OfType<BatchNorm>().ToList();
        Assert.Equal(label == "paper_cnn_8x8" ? 0 : label == "paper_cnn_bn_8x8" ? 3 : 4, batchNorms.Count);
        long seed = label switch { "paper_cnn_8x8" => 1101, "paper_cnn_bn_8x8" => 1102, _ => 1103 };
        Assert.All(batchNorms, bn => Assert.Equal(seed, bn.NumBatchesTracked));

        var logits = model.Forward(new Tensor(fixture.Data("x"), fixture.Shape("x")), training: false);
        Assert.Equal(fixture.Shape("logits"), logits.ShapeArray());
        double[] expected = fixture.DataDouble("logits");
        float[] actual = logits.Span.ToArray();
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-4, $"{label}: logit {i} is {actual[i]}, PyTorch gives {expected[i]}");
    }

    [Theory]
    [InlineData("paper-cnn")]
    [InlineData("paper-cnn-bn")]
    [InlineData("tiny-resnet")]
    public void ModelOnlyCheckpoint_HoldsExactlyPyTorchsStateDict_AndTheFullOneKeepsTrainingState(string network)
    {
        using var compute = new ComputeContext(2);
        var model = network == "tiny-resnet" ? NetworkFactory.Build(TinyResnetSpec(), compute, seed: 5) : PaperCnn(network == "paper-cnn-bn", 28, compute);
        // meProp with a running average on every conv layer: training state that must stay out of best.
        MePropSetup.Attach(model, ratio: 0.2, decay: 0.6, DecayShape.Full, selection: null, layerNames: null, seed: 5);
        var optimizer = new Adam(model.Parameters, compute.Pool, learningRate: 1e-3f);
        using var output = new TempDirectory();

        string best = output.File("best.safetensors"), last = output.File("last.safetensors");
        Checkpoint.SaveModel(best, model, new TrainOptions());
        Checkpoint.Save(last, model, optimizer, new TrainOptions(), new TrainProgress());

        Assert.Equal(TorchKeys(network), FileKeys(best));
        var bestFile = SafeTensorsFile.Load(best);
        Assert.True(bestFile.Metadata.ContainsKey("config"));
        Assert.DoesNotContain(bestFile.Metadata.Keys, key => key.Contains(".rng") || key.Contains("num_batches_tracked") || key == "optimizer_step");

        // The full checkpoint keeps its layout: float32 tensors only, the batch count in the metadata.
        var lastKeys = FileKeys(last);
        Assert.All(TorchKeys(network).Where(entry => !entry.Key.EndsWith(".num_batches_tracked", StringComparison.Ordinal)),
            entry => Assert.Equal(entry.Value, lastKeys[entry.Key]));
        Assert.All(lastKeys.Values, value => Assert.StartsWith("float32", value));
        Assert.Contains(lastKeys.Keys, key => key.EndsWith(".meprop.running_grad", StringComparison.Ordinal));
        Assert.Contains(lastKeys.Keys, key => key.StartsWith("optimizer.", StringComparison.Ordinal));
    }

    [Fact]
    public void Trainer_WritesAModelOnlyBest_ThatEvalLoads_AndALastThatResumes()
    {
        using var data = new TempDirectory();
        IdxTestFiles.WriteMnistLayout(data.Path, trainCount: 30, testCount: 10, height: 8, width: 8);
        var mnist = MnistFiles.Load(data.Path);
        var split = DatasetSplit.Create(mnist.Training, devSize: 10);
        using var compute = new ComputeContext(1);
        Sequential Build()
        {
            var model = NetworkFactory.Build(TinyResnetSpec(), compute, seed: 3);
            MePropSetup.Attach(model, ratio: 0.25, decay: 0.6, DecayShape.Full, selection: null, layerNames: null, seed: 3);
            return model;
        }
        var options = new TrainOptions { Epochs = 1, BatchSize = 5, Seed = 3, Threads = 1, DevSize = 10 };
        var trained = Build();
        using var output = new TempDirectory();
        new Trainer(trained, new Adam(trained.Parameters, compute.Pool, learningRate: 3e-3f), options, compute, split, mnist.Test, output.Path).Run();
        string best = output.File(Trainer.BestCheckpoint), last = output.File(Trainer.LastCheckpoint);

        Assert.Equal(TorchKeys("tiny-resnet"), FileKeys(best));
        Assert.NotNull(Checkpoint.ReadOptions(best).ModelOptions.Network);

        // eval's path: a model with meProp attached loads the model-only file; so does the strict load.
        foreach (Action<Sequential> load in new Action<Sequential>[] { m => Checkpoint.Load(best, m, optimizer: null), m => Checkpoint.LoadWeights(best, m) })
        {
            var rebuilt = Build();
            load(rebuilt);
            foreach (var (a, b) in trained.Parameters.Zip(rebuilt.Parameters))
                Assert.True(a.Value.Span.SequenceEqual(b.Value.Span), $"{a.Name} differs");
            foreach (var (a, b) in trained.AllLayers.OfType<BatchNorm>().Zip(rebuilt.AllLayers.OfType<BatchNorm>()))
            {
                Assert.True(a.RunningMean.Span.SequenceEqual(b.RunningMean.Span), $"{a.Name}.running_mean differs");
                Assert.True(a.RunningVariance.Span.SequenceEqual(b.RunningVariance.Span), $"{a.Name}.running_var differs");
                Assert.Equal(a.NumBatchesTracked, b.NumBatchesTracked);
            }
        }

        // A model-only file cannot resume; the full one can, and is not a model-only file.
        var resumed = Build();
        var error = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Load(best, resumed, new Adam(resumed.Parameters, compute.Pool)));
        Assert.Contains("model only", error.Message);
        Assert.NotNull(Checkpoint.Load(last, resumed, new Adam(resumed.Parameters, compute.Pool)));
        Assert.Contains("unexpected", Assert.Throws<CheckpointFormatException>(() => Checkpoint.LoadWeights(last, Build())).Message);
    }

    [Fact]
    public void FullCheckpoint_KeepsItsLayout_AndLoadsTheBatchCountFromEitherPlace()
    {
        using var compute = new ComputeContext(1);
        var model = PaperCnn(batchNorm: true, 8, compute);
        var input = new Tensor(Enumerable.Range(0, 4 * 64).Select(i => (float)Math.Sin(i)).ToArray(), 4, 1, 8, 8);
        model.Forward(input, training: true);
        model.Forward(input, training: true);
        using var output = new TempDirectory();
        string last = output.File("last.safetensors"), best = output.File("best.safetensors");
        Checkpoint.Save(last, model, optimizer: null, new TrainOptions(), new TrainProgress());
        Checkpoint.SaveModel(best, model, new TrainOptions());

        // As written before model-only files existed: float32 only, in the order parameters then layer state,
        // the count in the metadata.
        var saved = SafeTensorsFile.Load(last);
        Assert.Equal("meprop-checkpoint-1", saved.Metadata["format"]);
        Assert.Equal(model.Parameters.Select(p => p.Name).Concat(["bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var", "bn3.running_mean", "bn3.running_var"]), saved.Names);
        Assert.Equal("2", saved.Metadata["bn1.num_batches_tracked"]);
        Assert.Equal([2L], SafeTensorsFile.Load(best).GetInt64("bn1.num_batches_tracked"));

        foreach (string path in new[] { last, best })
        {
            var restored = PaperCnn(batchNorm: true, 8, compute);
            Checkpoint.Load(path, restored, optimizer: null);
            Assert.All(restored.AllLayers.OfType<BatchNorm>(), bn => Assert.Equal(2, bn.NumBatchesTracked));
            foreach (var (a, b) in model.AllLayers.OfType<BatchNorm>().Zip(restored.AllLayers.OfType<BatchNorm>()))
                Assert.True(a.RunningVariance.Span.SequenceEqual(b.RunningVariance.Span), $"{a.Name}.running_var differs");
        }
    }

    [Fact]
    public void LoadWeights_NamesEveryMissingUnexpectedMisShapedOrMisTypedTensor()
    {
        using var compute = new ComputeContext(1);
        var model = PaperCnn(batchNorm: true, 8, compute);
        using var output = new TempDirectory();
        string path = output.File("bad.safetensors");
        var file = new SafeTensorsFile();
        foreach (var p in model.Parameters.Where(p => p.Name != "fc2.bias"))
            file.Add(p.Name, p.Name == "conv1.weight" ? new Tensor(32, 1, 3, 3) : p.Value);
        foreach (var bn in model.AllLayers.OfType<BatchNorm>())
        {
            file.Add(bn.Name + ".running_mean", bn.RunningMean);
            file.Add(bn.Name + ".running_var", bn.RunningVariance);
            if (bn.Name == "bn2") file.Add(bn.Name + ".num_batches_tracked", new Tensor(1));
            else file.AddInt64(bn.Name + ".num_batches_tracked", [0]);
        }
        file.Add("fc3.weight", new Tensor(2));
        file.Save(path);

        string message = Assert.Throws<CheckpointFormatException>(() => Checkpoint.LoadWeights(path, model)).Message;
        Assert.StartsWith(path + ": ", message);
        Assert.Contains("missing tensor 'fc2.bias'", message);
        Assert.Contains("unexpected tensor 'fc3.weight'", message);
        Assert.Contains("'conv1.weight' has shape [32, 1, 3, 3], the model needs [32, 1, 5, 5]", message);
        Assert.Contains("'bn2.num_batches_tracked' is float32, the model needs int64", message);
        Assert.DoesNotContain('\n', message);
    }

    [Fact]
    public void LoadWeights_RejectsFloat64Tensors()
    {
        using var output = new TempDirectory();
        string path = output.File("f64.safetensors");
        byte[] header = System.Text.Encoding.UTF8.GetBytes("""{"conv1.weight":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}""");
        using (var stream = File.Create(path))
        {
            stream.Write(BitConverter.GetBytes((ulong)header.Length));
            stream.Write(header);
            stream.Write(new byte[8]);
        }
        using var compute = new ComputeContext(1);
        string message = Assert.Throws<CheckpointFormatException>(() => Checkpoint.LoadWeights(path, PaperCnn(false, 8, compute))).Message;
        Assert.Contains("tensor 'conv1.weight' has dtype F64; only F32 and I64 are supported", message);
    }
}
