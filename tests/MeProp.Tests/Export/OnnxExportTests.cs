using MeProp.Export;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Tensors;
using MeProp.Tests.Cli;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit.Abstractions;

namespace MeProp.Tests.Export;

/// <summary>
/// The exported ONNX model, run in ONNX Runtime, gives our evaluation-mode logits (max |difference| &lt;= 1e-4)
/// for the paper's CNN without and with batch norm and for a residual network with every layer kind.
/// </summary>
[Collection("Console")]
public sealed class OnnxExportTests(ITestOutputHelper output)
{
    private const float Tolerance = 1e-4f;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PaperCnnGivesOurLogits(bool batchNorm)
    {
        using var compute = new ComputeContext(threads: 2);
        var model = ModelBuilder.Build(new ModelOptions { BatchNorm = batchNorm }, 1, 28, 28, 10, compute, seed: 5);
        if (batchNorm) SetBatchNormStatistics(model, new Rng(11));
        byte[] onnx = ExportToBytes(model, [1, 28, 28]);
        using var session = new InferenceSession(onnx);
        AssertSameLogits(model, session, [1, 28, 28], batch: 6, seed: 21);
    }

    [Fact]
    public void ResidualNetworkWithEveryLayerKindGivesOurLogits()
    {
        using var compute = new ComputeContext(threads: 2);
        var model = new NetworkBuilder(3, 12, 12)
            .Normalize([0.49f, 0.48f, 0.45f], [0.25f, 0.24f, 0.26f])
            .Conv2d(8, 3, padding: NetworkBuilder.Same).BatchNorm().ReLU()
            .Residual(body => body.Conv2d(8, 3, padding: 1).BatchNorm().ReLU().Conv2d(8, 3, padding: 1).BatchNorm())
            .Tanh()
            .Residual(body => body.Conv2d(16, 3, stride: 2, padding: 1).BatchNorm().Sigmoid().Conv2d(16, 3, padding: 1),
                shortcut => shortcut.Conv2d(16, 1, stride: 2).BatchNorm())
            .ReLU().AvgPool2d(2).MaxPool2d(2, stride: 1).Dropout(0.3)
            .Residual(body => body.Conv2d(16, 1).ReLU())
            .GlobalAvgPool2d().Linear(12).BatchNorm().ReLU().Dropout().Linear(7)
            .Build(classes: 7, compute, seed: 3);
        Assert.Contains(model.AllLayers, l => l is Residual { IdentityShortcut: false });
        Assert.Contains(model.AllLayers, l => l is Residual { IdentityShortcut: true });
        SetBatchNormStatistics(model, new Rng(12));
        byte[] onnx = ExportToBytes(model, [3, 12, 12]);
        using var session = new InferenceSession(onnx);
        AssertSameLogits(model, session, [3, 12, 12], batch: 5, seed: 22);
    }

    [Fact]
    public void PoolingThatDropsARemainderGivesOurLogits()
    {
        using var compute = new ComputeContext(threads: 1);
        // 7x7 -> max 2 (floor: 3x3, the last row and column dropped) -> average 2, stride 1 -> 2x2; 9x9 -> conv stride 2 -> 5x5 -> average 2 (floor: 2x2) -> max 2, stride 1 -> 1x1.
        var odd = new NetworkBuilder(2, 7, 7).Conv2d(4, 3, padding: 1).ReLU().MaxPool2d(2).AvgPool2d(2, stride: 1).Flatten().Linear(5).Build(classes: 5, compute, seed: 4);
        using (var session = new InferenceSession(ExportToBytes(odd, [2, 7, 7]))) AssertSameLogits(odd, session, [2, 7, 7], batch: 3, seed: 5);
        var strided = new NetworkBuilder(1, 9, 9).Conv2d(3, 3, stride: 2, padding: 1).AvgPool2d(2).MaxPool2d(2, stride: 1).Flatten().Linear(4).Build(classes: 4, compute, seed: 6);
        using (var session = new InferenceSession(ExportToBytes(strided, [1, 9, 9]))) AssertSameLogits(strided, session, [1, 9, 9], batch: 2, seed: 7);
    }

    [Fact]
    public void TrainedBatchNormNetworkGivesOurLogits()
    {
        // Running statistics from real training steps, so that evaluation-mode batch norm is not the identity.
        using var compute = new ComputeContext(threads: 2);
        var model = ModelBuilder.Build(new ModelOptions { BatchNorm = true, Model = "mlp", HiddenSize = 16 }, 1, 8, 8, 10, compute, seed: 2);
        var rng = new Rng(4);
        for (int step = 0; step < 3; step++)
        {
            var x = TestData.UniformTensor(rng, 9, 1, 8, 8);
            var y = model.Forward(x, training: true);
            model.Backward(TestData.UniformTensor(rng, y.ShapeArray()));
        }
        Assert.NotEqual(0f, ((BatchNorm)model.Layer("bn1")).RunningMean.Span[0]);
        using var session = new InferenceSession(ExportToBytes(model, [1, 8, 8]));
        AssertSameLogits(model, session, [1, 8, 8], batch: 4, seed: 23);
    }

    [Fact]
    public void TheGraphHasTheNamedInputAndOutputWithADynamicBatch()
    {
        using var compute = new ComputeContext(threads: 2);
        var model = ModelBuilder.Build(new ModelOptions { BatchNorm = true }, 1, 28, 28, 10, compute, seed: 1);
        var proto = OnnxExporter.Build(model, [1, 28, 28]);
        Assert.Equal(OnnxExporter.Opset, proto.OpsetImport.Single().Version);
        Assert.Contains(proto.Graph.Initializer, t => t.Name == "conv1.weight" && t.Dims.SequenceEqual([32L, 1, 5, 5]));
        Assert.Contains(proto.Graph.Initializer, t => t.Name == "bn3.running_var" && t.Dims.SequenceEqual([1024L]));
        Assert.Contains(proto.Graph.Initializer, t => t.Name == "fc2.weight" && t.Dims.SequenceEqual([10L, 1024]));

        using var session = new InferenceSession(ExportToBytes(model, [1, 28, 28]));
        var input = Assert.Single(session.InputMetadata);
        Assert.Equal("input", input.Key);
        Assert.Equal(typeof(float), input.Value.ElementType);
        Assert.Equal(new[] { -1, 1, 28, 28 }, input.Value.Dimensions);
        Assert.Equal("N", input.Value.SymbolicDimensions[0]);
        var outputMeta = Assert.Single(session.OutputMetadata);
        Assert.Equal("logits", outputMeta.Key);
        Assert.Equal(new[] { -1, 10 }, outputMeta.Value.Dimensions);

        // One session, two batch sizes.
        AssertSameLogits(model, session, [1, 28, 28], batch: 1, seed: 31);
        AssertSameLogits(model, session, [1, 28, 28], batch: 13, seed: 32);
    }

    [Fact]
    public void ExportWritesAFileAndRefusesAnUnknownLayerByName()
    {
        using var directory = new TempDirectory();
        using var compute = new ComputeContext(threads: 1);
        var model = new NetworkBuilder(1, 4, 4).Flatten().Linear(3).Build(classes: 3, compute, seed: 1);
        string path = directory.File("m.onnx");
        OnnxExporter.Export(model, [1, 4, 4], path);
        using (var session = new InferenceSession(path)) AssertSameLogits(model, session, [1, 4, 4], batch: 2, seed: 33);
        Assert.Equal(new[] { "m.onnx" }, Directory.GetFiles(directory.Path).Select(Path.GetFileName));

        var odd = new Sequential([new Flatten("flat"), new Linear("fc1", 16, 3, compute, new Rng(1)), new OddLayer()]);
        var error = Assert.Throws<ArgumentException>(() => OnnxExporter.Export(odd, [1, 4, 4], new MemoryStream()));
        Assert.Contains("'odd1' (OddLayer)", error.Message);
        Assert.Throws<ArgumentException>(() => OnnxExporter.Export(model, [1, 5, 5], new MemoryStream()));
    }

    [Theory]
    [InlineData("paper-cnn")]
    [InlineData("network")]
    public void CliExportsATrainedRunThatOnnxRuntimeRuns(string kind)
    {
        using var data = CliHarness.TinyData();
        using var directory = new TempDirectory();
        string run = directory.File("run"), onnx = directory.File("model.onnx");
        string[] model = ["--model", "paper-cnn", "--batch-norm"];
        if (kind == "network")
        {
            string network = directory.File("net.json");
            File.WriteAllText(network, """
                {"input": [1, 8, 8], "classes": 10, "layers": [
                  {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
                  {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"}]},
                  {"type": "avgpool", "kernel_size": 2}, {"type": "globalavgpool"}, {"type": "linear", "out_features": 10}]}
                """);
            model = ["--model", network];
        }
        var trained = CliHarness.Run(["train", "--data", data.Path, "--out", run, .. model, "--dev-size", "12", "--batch-size", "7", "--threads", "1", "--epochs", "1"]);
        Assert.True(trained.Code == 0, trained.Stderr);

        string[] shapeArgs = kind == "paper-cnn" ? ["--input", "1,8,8", "--classes", "10"] : [];
        var exported = CliHarness.Run(["export", "--checkpoint", run, "--onnx", onnx, .. shapeArgs]);
        Assert.True(exported.Code == 0, exported.Stderr);
        Assert.Contains("[N, 1, 8, 8]", exported.Stdout);

        // The same logits as the checkpoint loaded into our model.
        using var compute = new ComputeContext(threads: 1);
        string best = Path.Combine(run, MeProp.Training.Trainer.BestCheckpoint);
        var options = MeProp.Training.Checkpoint.ReadOptions(best);
        var ours = ModelBuilder.Build(options.ModelOptions, 1, 8, 8, 10, compute, options.Seed);
        MeProp.Training.Checkpoint.Load(best, ours, optimizer: null);
        using var session = new InferenceSession(onnx);
        AssertSameLogits(ours, session, [1, 8, 8], batch: 3, seed: 34);

        if (kind == "paper-cnn")
        {
            // Without --input the built-in network is rebuilt for MNIST's 28x28 and the checkpoint does not fit.
            string message = CliHarness.AssertOneLineError(CliHarness.Run("export", "--checkpoint", run, "--onnx", directory.File("x.onnx")), 1);
            Assert.Contains("--input C,H,W", message);
            Assert.Contains("--input must be C,H,W", CliHarness.AssertOneLineError(CliHarness.Run("export", "--checkpoint", run, "--onnx", onnx, "--input", "1,8"), 1));
        }
        else
        {
            Assert.Contains("takes [1, 8, 8]", CliHarness.AssertOneLineError(CliHarness.Run("export", "--checkpoint", run, "--onnx", onnx, "--input", "3,8,8"), 1));
        }
        Assert.Contains("does not exist", CliHarness.AssertOneLineError(CliHarness.Run("export", "--checkpoint", directory.File("none"), "--onnx", onnx), 1));
    }

    private static byte[] ExportToBytes(Sequential model, int[] inputShape)
    {
        using var stream = new MemoryStream();
        OnnxExporter.Export(model, inputShape, stream);
        return stream.ToArray();
    }

    /// <summary>Random gamma, beta, running mean and variance, so that evaluation-mode batch norm matters.</summary>
    private static void SetBatchNormStatistics(Sequential model, Rng rng)
    {
        foreach (var bn in model.AllLayers.OfType<BatchNorm>())
            for (int c = 0; c < bn.Features; c++)
            {
                bn.Weight.Value.Span[c] = rng.NextUniform(0.5f, 1.5f);
                bn.Bias.Value.Span[c] = rng.NextUniform(-0.3f, 0.3f);
                bn.RunningMean.Span[c] = rng.NextUniform(-0.5f, 0.5f);
                bn.RunningVariance.Span[c] = rng.NextUniform(0.2f, 2f);
            }
    }

    /// <summary>Runs a batch of pixels in [0, 1] through both and asserts the logits agree within <see cref="Tolerance"/>.</summary>
    private void AssertSameLogits(Sequential model, InferenceSession session, int[] exampleShape, int batch, ulong seed)
    {
        var rng = new Rng(seed);
        int[] shape = [batch, .. exampleShape];
        var x = new MeProp.Tensors.Tensor(shape);
        for (int i = 0; i < x.Length; i++) x.Span[i] = rng.NextUniform(0f, 1f);
        float[] pixels = x.Span.ToArray();
        float[] expected = model.Forward(x, training: false).Span.ToArray();

        using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(pixels, shape))]);
        var logits = results.Single(r => r.Name == "logits").AsTensor<float>();
        Assert.Equal(new[] { batch, expected.Length / batch }, logits.Dimensions.ToArray());
        float[] actual = logits.ToArray();
        float maxDifference = 0;
        for (int i = 0; i < expected.Length; i++) maxDifference = Math.Max(maxDifference, Math.Abs(actual[i] - expected[i]));
        output.WriteLine($"batch {batch}: max |onnx - ours| = {maxDifference:g3} over {expected.Length} logits (max |logit| {expected.Max(Math.Abs):g3})");
        Assert.True(maxDifference <= Tolerance, $"max |onnx - ours| = {maxDifference:g3}");
    }

    /// <summary>A layer the exporter does not know.</summary>
    private sealed class OddLayer : ILayer
    {
        public string Name => "odd1";
        public IReadOnlyList<Parameter> Parameters => [];
        public bool ComputeInputGradient { get; set; }
        public int[] OutputShape(ReadOnlySpan<int> inputShape) => inputShape.ToArray();
        public MeProp.Tensors.Tensor Forward(MeProp.Tensors.Tensor input, bool training) => input;
        public MeProp.Tensors.Tensor? Backward(MeProp.Tensors.Tensor outputGradient) => outputGradient;
    }
}
