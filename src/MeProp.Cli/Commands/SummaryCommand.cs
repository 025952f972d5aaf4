using System.CommandLine;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;

namespace MeProp.Cli.Commands;

/// <summary>`meprop summary`: a network's layers with output shapes, parameters and multiply-adds.</summary>
internal static class SummaryCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var activation = CommonOptions.Activation();
        var batchNorm = new Option<bool>("--batch-norm") { Description = "Built-in networks: batch normalization after each hidden conv/linear layer" };
        var input = new Option<int[]?>("--input")
        {
            Description = "Built-in networks: the images' channels, height and width (default 1,28,28: MNIST)",
            CustomParser = result => result.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.TrimEntries)).Select(v => int.TryParse(v, out int d) && d > 0 ? d : 0).ToArray(),
        }.Require(v => v is null or [] or [> 0, > 0, > 0], "--input must be three positive numbers C,H,W");
        var classes = new Option<int>("--classes") { Description = "Built-in networks: number of classes", DefaultValueFactory = _ => MnistFiles.Classes }
            .Require(v => v >= 1, "--classes must be >= 1");
        var command = new Command("summary", "Print a network's layers: output shape, parameters, forward and dense backward multiply-adds per example")
        {
            model, activation, batchNorm, input, classes,
        };
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            var options = CommonOptions.ModelOptions(parse.GetValue(model)!) with
            {
                Activation = CommonOptions.ParseActivation(parse.GetValue(activation)!),
                BatchNorm = parse.GetValue(batchNorm),
            };
            int[] shape = options.Network?.Input ?? (parse.GetValue(input) is { Length: 3 } given ? given : [1, 28, 28]);
            int classCount = options.Network?.Classes ?? parse.GetValue(classes);
            using var compute = new ComputeContext(1);
            var spec = options.Network ?? ModelBuilder.Spec(options, shape[0], shape[1], shape[2], classCount);
            var network = NetworkFactory.Build(spec, compute, seed: 1);
            Console.WriteLine($"{options.Model}: {classCount} classes");
            Console.Write(new ModelSummary(network, shape).ToString());
            return 0;
        }));
        return command;
    }
}
