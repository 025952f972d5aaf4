using MeProp.Cli.Benchmarking;
using System.Text.Json;

namespace MeProp.Tests.Cli;

/// <summary>`meprop bench --model FILE.json` on our side alone (--no-torchsharp: no libtorch in tests).</summary>
[Collection("Console")]
public sealed class BenchModelTests
{
    /// <summary>A tiny network with every kind of layer the bench meets in ResNet-20, and 3 classes.</summary>
    private const string TinyNetwork = """
        {"input": [2, 8, 8], "classes": 3, "layers": [
          {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
          {"type": "residual", "layers": [
             {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
             {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"}]},
          {"type": "relu"},
          {"type": "residual", "layers": [
             {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "batchnorm"}],
           "shortcut": [{"type": "conv2d", "out_channels": 6, "kernel_size": 1, "stride": 2}]},
          {"type": "maxpool", "kernel_size": 2}, {"type": "globalavgpool"}, {"type": "linear", "out_features": 3}]}
        """;

    /// <summary>A network for 1x8x8 images of 10 classes (the tiny MNIST-layout data's).</summary>
    private const string TinyMnistNetwork = """
        {"input": [1, 8, 8], "classes": 10, "layers": [
          {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"}, {"type": "maxpool", "kernel_size": 2},
          {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1}, {"type": "relu"},
          {"type": "flatten"}, {"type": "linear", "out_features": 10}]}
        """;

    [Fact]
    public void Bench_on_real_data_and_trained_weights_records_them()
    {
        using var dir = new TempDirectory();
        using var data = CliHarness.TinyData();
        string network = dir.File("tiny.json");
        File.WriteAllText(network, TinyMnistNetwork);
        string weights = dir.File("weights.safetensors");
        using (var compute = new MeProp.Layers.ComputeContext(1))
            MeProp.Training.Checkpoint.SaveModel(weights, MeProp.Models.NetworkFactory.Build(MeProp.Models.NetworkSpec.Load(network), compute, 7), null);
        string json = dir.File("bench.json");
        var result = CliHarness.Run("bench", "--model", network, "--no-torchsharp", "--batch", "4", "--threads", "1", "--steps", "2",
            "--warmup", "1", "--topk", "0.5", "--decay", "0", "--exact-sparsity", "auto", "--data", data.Path, "--weights", weights, "--json", json);
        Assert.True(result.Code == 0, result.Stderr + result.Stdout);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        foreach (var record in doc.RootElement.EnumerateArray())
        {
            Assert.Equal(Path.GetFullPath(data.Path), record.GetProperty("data").GetString());
            Assert.Equal(weights, record.GetProperty("weights").GetString());
        }

        // The weights are loaded (a file of another network is refused, naming a tensor), and the images must fit.
        string other = dir.File("other.json");
        File.WriteAllText(other, TinyMnistNetwork.Replace("\"out_channels\": 6", "\"out_channels\": 5"));
        string refused = CliHarness.AssertOneLineError(CliHarness.Run("bench", "--model", other, "--no-torchsharp", "--batch", "4",
            "--threads", "1", "--steps", "1", "--warmup", "0", "--topk", "0.5", "--weights", weights), 1);
        Assert.Contains("'conv2.weight' has shape [6, 4, 3, 3], the model needs [5, 4, 3, 3]", refused);
        File.WriteAllText(other, TinyMnistNetwork.Replace("[1, 8, 8]", "[1, 9, 9]"));
        Assert.Contains("--data", CliHarness.AssertOneLineError(CliHarness.Run("bench", "--model", other, "--no-torchsharp", "--batch", "4",
            "--threads", "1", "--steps", "1", "--warmup", "0", "--topk", "0.5", "--data", data.Path), 1));
    }

    [Fact]
    public void Bench_of_a_network_file_records_dense_and_meprop()
    {
        using var dir = new TempDirectory();
        string network = dir.File("tiny.json");
        File.WriteAllText(network, TinyNetwork);
        string json = dir.File("bench.json");
        var result = CliHarness.Run("bench", "--model", network, "--no-torchsharp", "--batch", "4", "--threads", "1",
            "--steps", "3", "--warmup", "1", "--topk", "0.5", "--decay", "0.6", "--json", json);
        Assert.True(result.Code == 0, result.Stderr + result.Stdout);

        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var records = doc.RootElement.EnumerateArray().ToList();
        // Exact sparsity off, then auto, each dense and meProp.
        Assert.Equal(4, records.Count);
        Assert.Equal(["dense", "meprop", "dense", "meprop"], records.Select(r => r.GetProperty("mode").GetString()));
        Assert.Equal(["off", "off", "auto", "auto"], records.Select(r => r.GetProperty("exact_sparsity").GetString()));
        foreach (var r in records)
        {
            Assert.Equal("meprop", r.GetProperty("engine").GetString());
            Assert.Equal(Path.GetFullPath(network), r.GetProperty("model").GetString());
            Assert.Equal(4, r.GetProperty("batch").GetInt32());
            Assert.Equal(3, r.GetProperty("steps").GetInt32());
            // The bench counts allocations process-wide (worker threads included), so inside a test host other
            // threads can add to it; TrainingStepAllocationTests checks a described network's step exactly.
            Assert.True(r.GetProperty("allocated_bytes_per_step").GetDouble() >= 0);
            Assert.True(r.GetProperty("step_ms").GetDouble() > 0);
            Assert.True(r.GetProperty("eval_forward_ms").GetDouble() > 0);
            Assert.True(r.GetProperty("forward_macs_per_example").GetInt64() > 0);
            Assert.True(r.GetProperty("backward_ms_per_layer").TryGetProperty("res1", out _));
        }
        Assert.Equal(0.5, records[1].GetProperty("topk").GetDouble());
        Assert.Equal(0.6, records[1].GetProperty("decay").GetDouble());
        Assert.Contains("meprop 0.5 decay 0.6 exact auto: step", result.Stdout);
        Assert.Contains("x dense exact off", result.Stdout);
        // The auto records say which layers' backwards ran on the non-zeros only (a fraction of them).
        foreach (var fraction in records[2].GetProperty("exact_sparse_fraction").EnumerateObject())
            Assert.InRange(fraction.Value.GetDouble(), 0, 1);
        Assert.True(records[2].GetProperty("exact_sparse_fraction").TryGetProperty("res1.conv1", out _));
    }

    [Fact]
    public void Exact_threshold_probe_times_every_layer_shape_and_density()
    {
        using var dir = new TempDirectory();
        string json = dir.File("threshold.json");
        var result = CliHarness.Run("bench", "--exact-threshold", "--batch", "1", "--threads", "1", "--steps", "1", "--json", json);
        Assert.True(result.Code == 0, result.Stderr + result.Stdout);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var points = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(ExactSparsityProbe.DefaultLayers.Length * ExactSparsityProbe.DefaultDensities.Length, points.Count);
        foreach (var point in points)
        {
            Assert.True(point.GetProperty("dense_ms").GetDouble() > 0);
            Assert.True(point.GetProperty("exact_ms").GetDouble() > 0);
            Assert.True(point.GetProperty("auto_ms").GetDouble() > 0);
        }
        Assert.Contains("paper conv2 5x5 32->64 14x14", result.Stdout);
    }

    [Fact]
    public void Bench_meprop_layers_are_checked_before_timing()
    {
        using var dir = new TempDirectory();
        string network = dir.File("tiny.json");
        File.WriteAllText(network, TinyNetwork);
        string error = CliHarness.AssertOneLineError(CliHarness.Run("bench", "--model", network, "--no-torchsharp",
            "--batch", "2", "--threads", "1", "--steps", "1", "--warmup", "0", "--meprop-layers", "res1.conv1,nope"), 1);
        Assert.Contains("nope", error);
        Assert.Contains("--model", CliHarness.AssertOneLineError(CliHarness.Run("bench", "--no-torchsharp", "--meprop-layers", "conv2"), 1));
    }
}
