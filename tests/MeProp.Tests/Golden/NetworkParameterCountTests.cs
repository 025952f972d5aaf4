using MeProp.Layers;
using MeProp.Models;

namespace MeProp.Tests.Golden;

/// <summary>
/// `meprop summary`'s parameter counts against PyTorch's (network_parameter_counts.json): the example
/// networks in examples/networks/ and the built-in paper-cnn with and without batch norm, each rebuilt
/// by scripts/make_golden_fixtures.py as torch.nn modules from its description. The fixture holds, per
/// network, "NETWORK.total" and "NETWORK.layer.NAME" for every layer (at any depth) that has parameters.
/// </summary>
public class NetworkParameterCountTests
{
    private const string FixtureName = "network_parameter_counts.json";

    /// <summary>Network label -> the network file (relative to the repository root), or null for a built-in network.</summary>
    private static readonly Dictionary<string, string?> Networks = new(StringComparer.Ordinal)
    {
        ["resnet20-cifar"] = "examples/networks/resnet20-cifar.json",
        ["resnet20-fashion"] = "examples/networks/resnet20-fashion.json",
        ["cnn3-bn-dropout"] = "examples/networks/cnn3-bn-dropout.json",
        ["paper-cnn"] = null,
        ["paper-cnn-bn"] = null,
    };

    public static TheoryData<string> NetworkLabels => new(Networks.Keys);

    [Theory]
    [MemberData(nameof(NetworkLabels))]
    public void SummaryParameters_MatchPyTorch(string label)
    {
        var fixture = GoldenFixture.Load(FixtureName);
        using var compute = new ComputeContext(1);
        var (model, inputShape) = Build(label, compute);
        var summary = new ModelSummary(model, inputShape);

        Assert.Equal((long)fixture.Param($"{label}.total"), summary.Parameters);

        string prefix = $"{label}.layer.";
        var expected = fixture.ParamNames.Where(n => n.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(n => n[prefix.Length..], n => (long)fixture.Param(n), StringComparer.Ordinal);
        var ours = summary.Rows.Where(r => r.Parameters > 0)
            .ToDictionary(r => r.Name, r => r.Parameters, StringComparer.Ordinal);
        Assert.NotEmpty(expected);
        Assert.Equal(expected.OrderBy(kv => kv.Key, StringComparer.Ordinal), ours.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        // The top-level rows add up to the total, as PyTorch's children do.
        Assert.Equal(summary.Parameters, summary.Rows.Where(r => r.Depth == 0).Sum(r => r.Parameters));
    }

    [Fact]
    public void Fixture_CoversExactlyTheTestedNetworks()
    {
        var fixture = GoldenFixture.Load(FixtureName);
        var labels = fixture.ParamNames.Select(n => n[..n.IndexOf('.')]).Distinct().Order(StringComparer.Ordinal);
        Assert.Equal(Networks.Keys.Order(StringComparer.Ordinal), labels);
        Assert.All(Networks.Keys, label => Assert.Contains($"{label}.total", fixture.ParamNames));
    }

    private static (Sequential Model, int[] InputShape) Build(string label, ComputeContext compute)
    {
        if (Networks[label] is { } relative)
        {
            var spec = NetworkSpec.Load(Path.Combine(RepositoryRoot(), relative));
            return (NetworkFactory.Build(spec, compute, seed: 1), spec.Input);
        }
        bool batchNorm = label switch
        {
            "paper-cnn" => false,
            "paper-cnn-bn" => true,
            _ => throw new ArgumentException($"unknown built-in network {label}"),
        };
        return (ModelBuilder.Build(new ModelOptions { BatchNorm = batchNorm }, 1, 28, 28, 10, compute, seed: 1), [1, 28, 28]);
    }

    /// <summary>The directory holding MeProp.slnx, found by walking up from the test output directory.</summary>
    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MeProp.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no MeProp.slnx above {AppContext.BaseDirectory}");
    }
}
