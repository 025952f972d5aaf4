using System.CommandLine;
using MeProp.Cli.Commands;

namespace MeProp.Cli;

/// <summary>The `meprop` command tree; Program calls it, and tests run it in-process.</summary>
public static class CommandLine
{
    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("meprop: train convolutional networks with minimal-effort back-propagation (meProp, meProp-CNN).");
        root.Options.Add(CommonOptions.Verbose);
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(SummaryCommand.Create());
        root.Subcommands.Add(PredictCommand.Create());
        root.Subcommands.Add(DataCommand.Create());
        root.Subcommands.Add(StatsCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(ReproduceCommand.Create());
        root.Subcommands.Add(PlotCommand.Create());
        root.Subcommands.Add(CompareCommand.Create());
        return root;
    }

    /// <summary>Parses and runs; parse errors are one line each on stderr and exit code 2.</summary>
    public static int Run(string[] args)
    {
        var parse = CreateRoot().Parse(args);
        if (parse.Errors.Count > 0)
        {
            // One line per problem, not the whole help page: the user asked for a run, not for usage.
            foreach (var error in parse.Errors) Console.Error.WriteLine("error: " + Plain(error.Message));
            Console.Error.WriteLine("(see 'meprop <command> --help')");
            return 2;
        }
        return parse.Invoke();
    }

    /// <summary>A parse error on one line, with .NET type names said in words.</summary>
    private static string Plain(string message) => message.ReplaceLineEndings(" ").Replace("\t", "")
        .Replace("as expected type 'System.Int32'", "as a whole number")
        .Replace("as expected type 'System.UInt64'", "as a whole number >= 0")
        .Replace("as expected type 'System.Single'", "as a number")
        .Replace("as expected type 'System.Double'", "as a number");
}
