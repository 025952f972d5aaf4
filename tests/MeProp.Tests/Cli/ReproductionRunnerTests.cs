using System.Text.Json;
using MeProp.Cli.Reproduction;
using MeProp.Training;
using static MeProp.Tests.Cli.CliHarness;

namespace MeProp.Tests.Cli;

/// <summary>The reproduction's runner on tiny data: which runs count as finished, and with what options.</summary>
[Collection("Console")]
public class ReproductionRunnerTests
{
    [Fact]
    public void AFinishedRunOfOtherOptionsIsRefusedAndOneOfFewerEpochsTrainsOn()
    {
        using var data = TinyData();
        var images = MeProp.Data.DataDirectory.Load(data.Path);
        using var results = new TempDirectory();
        using var checkpoints = new TempDirectory();
        var run = new ReproductionRun(ReproductionGrid.All.Single(c => c.Name == "table2-dense"), 1);
        ReproductionRunner Runner(int epochs, int devSize) => new(results.Path, checkpoints.Path, images, epochs, threads: 1, devSize, maxTrain: null);

        Runner(epochs: 1, devSize: 12).RunAll([run], jobs: 1, () => { });
        Assert.True(Runner(epochs: 1, devSize: 12).IsFinished(run));

        var other = Assert.Throws<InvalidOperationException>(() => Runner(epochs: 1, devSize: 6).RunAll([run], jobs: 1, () => { }));
        Assert.Contains("other options", other.Message);

        var longer = Runner(epochs: 2, devSize: 12);
        Assert.False(longer.IsFinished(run));
        longer.RunAll([run], jobs: 1, () => { });
        string published = Path.Combine(results.Path, run.RelativePath);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(published, Trainer.MetricsFile)).Length);
        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(published, Trainer.SummaryFile)));
        Assert.Equal(2, summary.RootElement.GetProperty("epochs_completed").GetInt32());
    }
}
