using System.CommandLine;
using MeProp.Cli;
using MeProp.Cli.Commands;

var root = new RootCommand("meprop: train convolutional networks with minimal-effort back-propagation (meProp, meProp-CNN).");
root.Options.Add(CommonOptions.Verbose);
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(DataCommand.Create());
return root.Parse(args).Invoke();
