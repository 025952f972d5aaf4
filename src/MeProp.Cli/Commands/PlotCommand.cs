using System.CommandLine;
using MeProp.Cli.Plotting;
using MeProp.Cli.Reproduction;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>
/// `meprop plot`: the training curves of run directories side by side, dev accuracy and training loss per
/// epoch, one line per run, as dev-accuracy.png/.svg and train-loss.png/.svg.
/// </summary>
internal static class PlotCommand
{
    public static Command Create()
    {
        var runs = new Argument<string[]>("RUN_DIR")
        {
            Description = $"Run directories, each with the {Trainer.MetricsFile} that 'meprop train' writes",
            Arity = ArgumentArity.OneOrMore,
        };
        var output = new Option<string>("--out") { Description = "Directory for the charts (default: the current directory)", DefaultValueFactory = _ => "." };
        var labels = new Option<string[]?>("--labels")
        {
            Description = "Legend entries, comma-separated, one per run directory in order (default: the directories' names)",
            CustomParser = result => result.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.TrimEntries)).ToArray(),
        };
        var command = new Command("plot", "Draw dev accuracy and training loss per epoch of runs as PNG and SVG charts") { runs, output, labels };
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            string[] directories = parse.GetValue(runs)!;
            // An absent --labels reads as an empty list, not as null.
            string[] names = parse.GetValue(labels) is { Length: > 0 } given
                ? given
                : DefaultLabels(directories);
            if (names.Length != directories.Length)
                throw new ArgumentException($"--labels gives {names.Length} labels for {directories.Length} run directories");
            var records = directories.Select(Read).ToList();
            string root = parse.GetValue(output)!;
            Directory.CreateDirectory(root);
            foreach (var metric in Metric.All)
            {
                var curves = names.Zip(records).Select(run => Curve.Summarise(run.First, [run.Second], metric)).ToList();
                foreach (string path in TrainingCurves.Write(metric, curves, metric.Title, Path.Combine(root, metric.Name)))
                    Console.WriteLine($"wrote {path}");
            }
            if (!TrainingCurves.HasFonts)
                Console.Error.WriteLine("warning: no fonts in /usr/share/fonts, so the charts have no text (titles, axis labels, legend); install one, e.g. Debian's fonts-dejavu-core");
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// The directories' names; where two are the same (seed-1 of two configurations of a reproduction),
    /// every label is PARENT/NAME.
    /// </summary>
    private static string[] DefaultLabels(string[] directories)
    {
        var paths = directories.Select(d => Path.TrimEndingDirectorySeparator(Path.GetFullPath(d))).ToArray();
        var names = paths.Select(p => Path.GetFileName(p)).ToArray();
        return names.Distinct().Count() == names.Length
            ? names
            : paths.Select(p => $"{Path.GetFileName(Path.GetDirectoryName(p))}/{Path.GetFileName(p)}").ToArray();
    }

    /// <summary>A run's metrics; a directory without any is an error that names it.</summary>
    private static RunRecord Read(string directory)
    {
        if (!Directory.Exists(directory)) throw new ArgumentException($"{directory}: no such run directory");
        if (!File.Exists(Path.Combine(directory, Trainer.MetricsFile)))
            throw new ArgumentException($"{directory}: no {Trainer.MetricsFile} here (not a run directory of 'meprop train')");
        var record = RunRecord.Read(directory);
        if (record.EpochsCompleted == 0) throw new ArgumentException($"{directory}: {Trainer.MetricsFile} has no completed epoch yet");
        return record;
    }
}
