using System.Text.Json;
using MeProp.Sparsity;
using MeProp.Training;

namespace MeProp.Tests.Training;

/// <summary>The meProp ratio schedules: the ratio in force at given epochs, parsing, and the configuration's JSON.</summary>
public class TopKScheduleTests
{
    [Fact]
    public void LinearAndCosineGoFromStartToEndOverTheEpochs()
    {
        var linear = TopKSchedule.Parse("linear:0.2:0.05");
        Assert.Equal([0.2, 0.15, 0.1, 0.05], Enumerable.Range(1, 4).Select(e => Math.Round(linear.RatioAt(e, 4)!.Value, 12)));
        var cosine = TopKSchedule.Parse("cosine:0.2:0.05");
        Assert.Equal(0.2, cosine.RatioAt(1, 5)!.Value, 12);
        Assert.Equal(0.05 + 0.15 * (1 + Math.Cos(Math.PI / 4)) / 2, cosine.RatioAt(2, 5)!.Value, 12);
        Assert.Equal(0.125, cosine.RatioAt(3, 5)!.Value, 12);
        Assert.Equal(0.05, cosine.RatioAt(5, 5)!.Value, 12);
        // A one-epoch run stays at the start; epochs past the configured ones stay at the end.
        Assert.Equal(0.2, linear.RatioAt(1, 1)!.Value, 12);
        Assert.Equal(0.05, linear.RatioAt(7, 4)!.Value, 12);
    }

    [Fact]
    public void DenseEpochsTakeRatioOneAndConstantKeepsEachLayersOwn()
    {
        var schedule = new TopKSchedule { DenseWarmup = 2, DenseEvery = 3 };
        Assert.Equal([1.0, 1.0, 1.0, null, null, 1.0, null], Enumerable.Range(1, 7).Select(e => schedule.RatioAt(e, 7)));
        var linear = TopKSchedule.Parse("linear:0.5:0.1") with { DenseWarmup = 1 };
        Assert.Equal([1.0, 0.4, 0.3, 0.2, 0.1], Enumerable.Range(1, 5).Select(e => Math.Round(linear.RatioAt(e, 5)!.Value, 12)));
        Assert.Equal(new TopKSchedule(), TopKSchedule.Parse("constant"));
    }

    [Theory]
    [InlineData("step:0.2:0.1")]
    [InlineData("linear:0.2")]
    [InlineData("linear:0.2:0")]
    [InlineData("cosine:1.5:0.1")]
    [InlineData("cosine:a:0.1")]
    [InlineData("constant:0.1")]
    public void BadSchedulesAreErrors(string text) => Assert.Throws<ArgumentException>(() => TopKSchedule.Parse(text));

    [Fact]
    public void TheConfigurationCarriesTheScheduleOnlyWhenSet()
    {
        string json = JsonSerializer.Serialize(new TrainOptions { TopK = 0.05 }, Json.Line);
        Assert.DoesNotContain("schedule", json);
        Assert.Null(JsonSerializer.Deserialize<TrainOptions>(json, Json.Line)!.TopKSchedule);
        var options = new TrainOptions { TopK = 0.05, TopKSchedule = TopKSchedule.Parse("cosine:0.2:0.05") with { DenseWarmup = 1 } };
        json = JsonSerializer.Serialize(options, Json.Line);
        Assert.Contains("\"top_k_schedule\":{\"shape\":\"cosine\",\"start_ratio\":0.2,\"end_ratio\":0.05,\"dense_warmup\":1,\"dense_every\":0}", json);
        Assert.Equal(options.TopKSchedule, JsonSerializer.Deserialize<TrainOptions>(json, Json.Line)!.TopKSchedule);
    }

    [Fact]
    public void ASparsifiersRatioChangesKBetweenSteps()
    {
        var sparsifier = new GradientSparsifier("conv1", new MePropOptions { Ratio = 0.25 }, convolutional: true, seed: 1);
        using var pool = new MeProp.Threading.WorkerPool(2);
        var dy = Enumerable.Range(0, 2 * 3 * 8).Select(i => (float)Math.Sin(i + 1)).ToArray();
        Assert.Equal(3 * 4, sparsifier.Sparsify(dy, 2, 3, 8, pool).Selected);
        sparsifier.Ratio = 0.5;
        Assert.Equal(0.5, sparsifier.Options.Ratio);
        Assert.Equal(3 * 8, sparsifier.Sparsify(dy, 2, 3, 8, pool).Selected);
        sparsifier.Ratio = 1;
        Assert.Equal(3 * 16, sparsifier.Sparsify(dy, 2, 3, 8, pool).Selected);
        Assert.Throws<ArgumentException>(() => sparsifier.Ratio = 0);
    }
}
