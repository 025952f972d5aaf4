using System.CommandLine;
using MeProp.Cli;
using MeProp.Cli.Commands;

var root = new RootCommand("meprop: train convolutional networks with minimal-effort back-propagation (meProp, meProp-CNN).");
root.Options.Add(CommonOptions.Verbose);
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(DataCommand.Create());
root.Subcommands.Add(StatsCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    // One line per problem, not the whole help page: the user asked for a run, not for usage.
    foreach (var error in parse.Errors) Console.Error.WriteLine("error: " + error.Message.ReplaceLineEndings(" ").Replace("\t", ""));
    Console.Error.WriteLine("(see 'meprop <command> --help')");
    return 2;
}
return parse.Invoke();
