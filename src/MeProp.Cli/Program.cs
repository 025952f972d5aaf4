return MeProp.Cli.CommandLine.Run(args);
