using MeProp.Cli.Commands;
using MeProp.Tensors;

using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Cli;

/// <summary>`meprop stats` on a network file: densities, kept fractions and the cosine between each layer's weights and their gradient.</summary>
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

    [Fact]
    public void ABatchNormedLayersGradientIsOrthogonalToItsFiltersUnlessTopKBreaksIt()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string network = output.File("net.json");
        File.WriteAllText(network, Network);
        string[] common = ["stats", "--model", network, "--data", data.Path, "--batch-size", "8", "--dev-size", "12", "--iterations", "3", "--threads", "2"];

        // conv1 reads the raw pixels, all positive: the cancellation in its dL/dw leaves float32 rounding of ~0.3% there.
        var dense = Run(common);
        Assert.True(dense.Code == 0, dense.Stderr);
        Assert.InRange(Cosine(dense.Stdout, "conv1"), 0, 0.01);
        Assert.InRange(Cosine(dense.Stdout, "res1.conv1"), 0, 1e-3);

        // Whole channels keep the orthogonality; 20% of each channel's entries do not.
        var channels = Run([.. common, "--topk", "0.5", "--selection", "channel", "--meprop-layers", "res1.conv1"]);
        Assert.True(channels.Code == 0, channels.Stderr);
        Assert.InRange(Cosine(channels.Stdout, "res1.conv1"), 0, 1e-3);
        var topK = Run([.. common, "--topk", "0.2", "--meprop-layers", "res1.conv1"]);
        Assert.True(topK.Code == 0, topK.Stderr);
        Assert.True(Cosine(topK.Stdout, "res1.conv1") > 0.05, topK.Stdout);
    }

    [Fact]
    public void ComparesEachWeightGradientWithTheExactOne()
    {
        using var data = TinyData();
        using var output = new TempDirectory();
        string network = output.File("net.json");
        File.WriteAllText(network, Network);
        string[] common = ["stats", "--model", network, "--data", data.Path, "--batch-size", "8", "--dev-size", "12", "--iterations", "3", "--threads", "2"];

        var dense = Run(common);
        Assert.True(dense.Code == 0, dense.Stderr);
        foreach (string layer in new[] { "conv1", "res1.conv1", "fc1" })
            Assert.InRange(Fidelity(dense.Stdout, layer), 1 - 1e-6, 1 + 1e-6);

        // Selection on res1.conv1: its own gradient and that of conv1 before it (which gets dL/dx through it)
        // are approximate; fc1 after it, whose backward runs first, is exact.
        var topK = Run([.. common, "--topk", "0.2", "--meprop-layers", "res1.conv1"]);
        Assert.True(topK.Code == 0, topK.Stderr);
        Assert.InRange(Fidelity(topK.Stdout, "res1.conv1"), 0.05, 0.99);
        Assert.InRange(Fidelity(topK.Stdout, "conv1"), -1, 0.999);
        Assert.InRange(Fidelity(topK.Stdout, "fc1"), 1 - 1e-6, 1 + 1e-6);
    }

    [Fact]
    public void CosineIsComputedByHand()
    {
        // (1, 2, 2) . (2, 0, 1) = 4; norms 3 and sqrt(5).
        Assert.Equal(4 / (3 * Math.Sqrt(5)), StatsCommand.Cosine([1, 2, 2], [2, 0, 1]), 1e-12);
        Assert.Equal(0, StatsCommand.Cosine([0, 0], [1, 2]));
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
