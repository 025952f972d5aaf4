namespace MeProp.Tests.Golden;

public class GoldenFixtureTests
{
    /// <summary>Every fixture the script writes, with the tensors each must hold.</summary>
    public static TheoryData<string, string[]> Expected => new()
    {
        { "conv2d_s1_p2.json", ["x", "weight", "bias", "y", "dy", "dx", "dweight", "dbias"] },
        { "conv2d_s2_p1.json", ["x", "weight", "bias", "y", "dy", "dx", "dweight", "dbias"] },
        { "conv2d_s1_p0_odd.json", ["x", "weight", "bias", "y", "dy", "dx", "dweight", "dbias"] },
        { "conv2d_k4_s2_p1.json", ["x", "weight", "bias", "y", "dy", "dx", "dweight", "dbias"] },
        { "conv2d_k2_s3_p0.json", ["x", "weight", "bias", "y", "dy", "dx", "dweight", "dbias"] },
        { "conv2d_k1_s2_p0.json", ["x", "weight", "bias", "y", "dy", "dx", "dweight", "dbias"] },
        { "linear.json", ["x", "weight", "bias", "y", "dy", "dx", "dweight", "dbias"] },
        { "maxpool2d.json", ["x", "y", "dy", "dx"] },
        { "maxpool2d_odd.json", ["x", "y", "dy", "dx"] },
        { "maxpool2d_k3s2.json", ["x", "y", "dy", "dx"] },
        { "maxpool2d_k2s1.json", ["x", "y", "dy", "dx"] },
        { "maxpool2d_wide.json", ["x", "y", "dy", "dx"] },
        { "relu.json", ["x", "y", "dy", "dx"] },
        { "sigmoid.json", ["x", "y", "dy", "dx"] },
        { "tanh.json", ["x", "y", "dy", "dx"] },
        { "softmax_cross_entropy.json", ["logits", "labels", "loss", "dlogits"] },
        { "batchnorm2d_train.json", ["x", "gamma", "beta", "y", "dy", "dx", "dgamma", "dbeta", "running_mean", "running_var", "x2", "y_eval"] },
        { "batchnorm1d_train.json", ["x", "gamma", "beta", "y", "dy", "dx", "dgamma", "dbeta", "running_mean", "running_var", "x2", "y_eval"] },
        { "batchnorm2d_1x1_train.json", ["x", "gamma", "beta", "y", "dy", "dx", "dgamma", "dbeta", "running_mean", "running_var", "x2", "y_eval"] },
        { "adam_steps.json", ["p0", "g1", "g2", "g3", "p1", "p2", "p3"] },
        { "sgd_momentum_steps.json", ["p0", "g1", "g2", "g3", "p1", "p2", "p3"] },
        { "avgpool2d_k2s2.json", ["x", "y", "dy", "dx"] },
        { "avgpool2d_k3s2_odd.json", ["x", "y", "dy", "dx"] },
        { "avgpool2d_k2s3.json", ["x", "y", "dy", "dx"] },
        { "global_avgpool2d.json", ["x", "y", "dy", "dx"] },
        { "residual_identity.json", ["block1.conv1.weight", "block1.conv1.bias", "block1.bn1.weight", "block1.bn1.bias", "block1.conv2.weight", "block1.conv2.bias", "block1.bn2.weight", "block1.bn2.bias", "x", "y", "dy", "dx", "grad.block1.conv1.weight", "grad.block1.conv1.bias", "grad.block1.bn1.weight", "grad.block1.bn1.bias", "grad.block1.conv2.weight", "grad.block1.conv2.bias", "grad.block1.bn2.weight", "grad.block1.bn2.bias", "block1.bn1.running_mean", "block1.bn1.running_var", "block1.bn2.running_mean", "block1.bn2.running_var"] },
        { "residual_downsample.json", ["block1.conv1.weight", "block1.conv1.bias", "block1.bn1.weight", "block1.bn1.bias", "block1.conv2.weight", "block1.conv2.bias", "block1.bn2.weight", "block1.bn2.bias", "block1.shortcut.conv.weight", "block1.shortcut.conv.bias", "block1.shortcut.bn.weight", "block1.shortcut.bn.bias", "x", "y", "dy", "dx", "grad.block1.conv1.weight", "grad.block1.conv1.bias", "grad.block1.bn1.weight", "grad.block1.bn1.bias", "grad.block1.conv2.weight", "grad.block1.conv2.bias", "grad.block1.bn2.weight", "grad.block1.bn2.bias", "grad.block1.shortcut.conv.weight", "grad.block1.shortcut.conv.bias", "grad.block1.shortcut.bn.weight", "grad.block1.shortcut.bn.bias", "block1.bn1.running_mean", "block1.bn1.running_var", "block1.bn2.running_mean", "block1.bn2.running_var", "block1.shortcut.bn.running_mean", "block1.shortcut.bn.running_var"] },
        { "tiny_cnn_training.json", [
            "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
            "inputs", "labels", "logits_step0", "losses",
            "final.conv1.weight", "final.conv1.bias", "final.conv2.weight", "final.conv2.bias",
            "final.fc1.weight", "final.fc1.bias", "final.fc2.weight", "final.fc2.bias"] },
        { "network_parameter_counts.json", [] },
    };

    /// <summary>Each problem found in <paramref name="fixture"/>: a non-positive dimension, or a shape whose
    /// element count differs from the data length, or a non-finite value.</summary>
    internal static List<string> Inconsistencies(GoldenFixture fixture)
    {
        var problems = new List<string>();
        foreach (string name in fixture.TensorNames)
        {
            int[] shape = fixture.Shape(name);
            double[] data = fixture.DataDouble(name);
            long count = 1;
            foreach (int d in shape) count *= d;
            if (shape.Any(d => d <= 0))
                problems.Add($"{fixture.FileName}: {name} has a non-positive dimension in [{string.Join(", ", shape)}]");
            else if (count != data.Length)
                problems.Add($"{fixture.FileName}: {name} shape [{string.Join(", ", shape)}] needs {count} values, data has {data.Length}");
            if (data.Any(v => !double.IsFinite(v)))
                problems.Add($"{fixture.FileName}: {name} holds a non-finite value");
        }
        return problems;
    }

    [Fact]
    public void EveryFixtureFile_HasShapesMatchingItsData()
    {
        var files = GoldenFixture.AllFileNames();
        Assert.True(files.Count == Expected.Count, $"found {files.Count} fixtures in {GoldenFixture.Directory}, expected {Expected.Count}");
        var problems = files.SelectMany(f => Inconsistencies(GoldenFixture.Load(f))).ToList();
        Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems));
    }

    [Theory]
    [MemberData(nameof(Expected))]
    public void Fixture_HoldsTheExpectedTensors(string fileName, string[] names)
    {
        var fixture = GoldenFixture.Load(fileName);
        Assert.Equal(names.Order(StringComparer.Ordinal), fixture.TensorNames.Order(StringComparer.Ordinal));
        Assert.Empty(Inconsistencies(fixture));
    }

    [Fact]
    public void Inconsistencies_ReportsAShapeThatDisagreesWithItsData()
    {
        var bad = GoldenFixture.Parse(
            """{"description": "bad", "params": {}, "tensors": {"x": {"shape": [2, 3], "data": [1, 2, 3, 4, 5]}, "ok": {"shape": [2], "data": [1, 2]}}}""",
            "bad.json");
        var problems = Inconsistencies(bad);
        Assert.Single(problems);
        Assert.Contains("x shape [2, 3] needs 6 values, data has 5", problems[0]);
    }

    [Fact]
    public void Load_ReadsShapesDataAndParams()
    {
        var conv = GoldenFixture.Load("conv2d_s2_p1.json");
        Assert.Equal([3, 2, 9, 8], conv.Shape("x"));
        Assert.Equal([3, 5, 5, 4], conv.Shape("y"));
        Assert.Equal(2.0, conv.Param("stride"));
        Assert.Equal(1.0, conv.Param("padding"));
        Assert.Equal(3 * 2 * 9 * 8, conv.Data("x").Length);
        Assert.Throws<KeyNotFoundException>(() => conv.Data("no_such_tensor"));
        Assert.Throws<KeyNotFoundException>(() => conv.Param("no_such_param"));

        var odd = GoldenFixture.Load("maxpool2d_odd.json");
        Assert.Equal([1, 2, 3, 2], odd.Shape("y"));
    }
}
