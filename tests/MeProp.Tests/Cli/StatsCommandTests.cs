using MeProp.Cli.Commands;
using MeProp.Layers;
using MeProp.Losses;
using MeProp.Models;
using MeProp.Sparsity;
using MeProp.Tensors;

using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Cli;

/// <summary>`meprop stats`: densities, kept fractions, the cosine between each layer's weights and their gradient, and between that gradient and the exact one.</summary>
[Collection("Console")]
public class StatsCommandTests
{
    private const string Network = """
        {"input": [1, 8, 8], "classes": 10, "layers": [
          {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
          {"type": "residual", "layers": [
              {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"}]},
          {"type": "globalavgpool"}, {"type": "linear", "out_features": 10}]}
        """;

    /// <summary>The |cos(w, dL/dw)| column of the layer's row.</summary>
    private static double Cosine(string stdout, string layer) => Column(stdout, layer, 2);

    /// <summary>The cos(dL/dw, exact) column of the layer's row.</summary>
    private static double Fidelity(string stdout, string layer) => Column(stdout, layer, 1);

    /// <summary>The value <paramref name="fromEnd"/> columns from the end of the layer's row.</summary>
    private static double Column(string stdout, string layer, int fromEnd) =>
        double.Parse(stdout.Split('\n').Single(line => line.StartsWith(layer + " ", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[^fromEnd],
            System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>`meprop stats` on <see cref="Network"/> over tiny data (batch 8, 3 iterations) with <paramref name="options"/>; its output.</summary>
    private static string Stats(params string[] options)
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string network = output.File("net.json");
        File.WriteAllText(network, Network);
        var result = Run(["stats", "--model", network, "--data", data.Path, "--batch-size", "8", "--dev-size", "12", "--iterations", "3", "--threads", "2", .. options]);
        Assert.True(result.Code == 0, result.Stderr);
        return result.Stdout;
    }

    [Fact]
    public void ABatchNormedLayersGradientIsOrthogonalToItsFiltersUnlessTopKBreaksIt()
    {
        // conv1 reads the raw pixels, all positive: the cancellation in its dL/dw leaves float32 rounding of ~0.3% there.
        string dense = Stats();
        Assert.InRange(Cosine(dense, "conv1"), 0, 0.01);
        Assert.InRange(Cosine(dense, "res1.conv1"), 0, 1e-3);

        // Whole channels keep the orthogonality; 20% of each channel's entries do not.
        Assert.InRange(Cosine(Stats("--topk", "0.5", "--selection", "channel", "--meprop-layers", "res1.conv1"), "res1.conv1"), 0, 1e-3);
        string topK = Stats("--topk", "0.2", "--meprop-layers", "res1.conv1");
        Assert.True(Cosine(topK, "res1.conv1") > 0.05, topK);
    }

    [Fact]
    public void ComparesEachWeightGradientWithTheExactOne()
    {
        string dense = Stats();
        foreach (string layer in new[] { "conv1", "res1.conv1", "fc1" })
            Assert.InRange(Fidelity(dense, layer), 1 - 1e-6, 1 + 1e-6);

        // Selection on res1.conv1: its own gradient and that of conv1 before it (which gets dL/dx through it)
        // are approximate; fc1 after it, whose backward runs first, is exact.
        string topK = Stats("--topk", "0.2", "--meprop-layers", "res1.conv1");
        Assert.InRange(Fidelity(topK, "res1.conv1"), 0.05, 0.99);
        Assert.InRange(Fidelity(topK, "conv1"), -1, 0.999);
        Assert.InRange(Fidelity(topK, "fc1"), 1 - 1e-6, 1 + 1e-6);
    }

    [Fact]
    public void ExactGradientCosinesCompareWithASeparateDenseBackward()
    {
        using var compute = new ComputeContext(1);
        Sequential Model(bool withSelection)
        {
            var rng = new Rng(3);
            var model = new Sequential(
            [
                new Conv2d("conv1", 1, 4, 3, 1, 1, compute, rng),
                new Activation("act1", ActivationKind.Relu),
                new Dropout("dropout1", 0.5f, new Rng(5)), // the exact pass must draw the same mask
                new Conv2d("conv2", 4, 4, 3, 2, 1, compute, rng),
                new Flatten("flatten"),
                new Linear("fc1", 64, 10, compute, rng),
            ]);
            if (withSelection) MePropSetup.Attach(model, 0.2, 0, DecayShape.Full, selection: null, layerNames: ["conv2"], seed: 1);
            return model;
        }
        var images = new Tensor(5, 1, 8, 8);
        var pixels = new Rng(7);
        for (int i = 0; i < images.Length; i++) images.Span[i] = (float)pixels.NextDouble();
        int[] labels = [0, 3, 9, 3, 1];
        float[][] Gradients(Sequential model)
        {
            var loss = new SoftmaxCrossEntropy();
            loss.Forward(model.Forward(images, training: true), labels);
            model.Backward(loss.Gradient);
            return model.AllLayers.OfType<IMePropLayer>().Select(l => l.Parameters[0].Gradient.Span.ToArray()).ToArray();
        }
        var selected = Gradients(Model(true));
        var exact = Gradients(Model(false));

        var measured = Model(true);
        var dropoutStates = StatsCommand.DropoutStates(measured);
        Gradients(measured);
        var layers = measured.AllLayers.OfType<IMePropLayer>().ToArray();
        var cosines = StatsCommand.ExactGradientCosines(measured, layers, layers.Select(l => l.Parameters[0]).ToArray(), new SoftmaxCrossEntropy(), images, labels, dropoutStates);

        for (int l = 0; l < layers.Length; l++)
            Assert.Equal(StatsCommand.Cosine(selected[l], exact[l]), cosines[l], 1e-9);
        Assert.True(cosines[0] < 0.999 && cosines[1] < 0.999, string.Join(", ", cosines)); // conv2 selects, conv1 gets its approximate dL/dx
        Assert.Equal(1, cosines[2], 1e-9);                                                   // fc1 is behind no selection
        Assert.All(layers, l => Assert.Null(l.Sparsifier));
    }

    [Fact]
    public void NormalisesByTheStatisticsOfTheTrainingImagesItUses()
    {
        using var data = TinyData();
        var training = MeProp.Data.DataDirectory.Load(data.Path).Training;
        string Statistics(int? maxTrain)
        {
            var (mean, std) = MeProp.Data.DatasetSplit.Create(training, 12, maxTrain).Train.ChannelStatistics();
            return $"input normalised by mean {mean[0].ToString("F4", System.Globalization.CultureInfo.InvariantCulture)} std {std[0].ToString("F4", System.Globalization.CultureInfo.InvariantCulture)},";
        }
        Assert.NotEqual(Statistics(20), Statistics(null)); // so that the check below sees --max-train

        var result = Run(["stats", "--model", "paper-cnn", "--data", data.Path, "--batch-size", "8", "--dev-size", "12", "--max-train", "20", "--normalize", "--threads", "1"]);
        Assert.True(result.Code == 0, result.Stderr);
        Assert.Contains(Statistics(20), result.Stdout);
        var plain = Run(["stats", "--model", "paper-cnn", "--data", data.Path, "--batch-size", "8", "--dev-size", "12", "--threads", "1"]);
        Assert.DoesNotContain("normalised", plain.Stdout);
    }

    [Fact]
    public void CosineIsComputedByHand()
    {
        // (1, 2, 2) . (2, 0, 1) = 4; norms 3 and sqrt(5).
        Assert.Equal(4 / (3 * Math.Sqrt(5)), StatsCommand.Cosine([1, 2, 2], [2, 0, 1]), 1e-12);
        Assert.True(double.IsNaN(StatsCommand.Cosine([0, 0], [1, 2])));
    }

    [Fact]
    public void MeanAbsoluteCosineIsTakenPerOutputChannel()
    {
        var weight = new Parameter("fc.weight", 3, 2);
        new float[] { 1, 0, 0, 2, 5, 5 }.CopyTo(weight.Value.Span);
        new float[] { 1, 1, 0, -3, 0, 0 }.CopyTo(weight.Gradient.Span); // the third channel has no gradient: left out
        Assert.Equal((1 / Math.Sqrt(2) + 1) / 2, StatsCommand.MeanAbsoluteCosine(weight), 1e-12);
    }
}
