using System.CommandLine;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Losses;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Tensors;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>
/// `meprop stats`: trains N iterations and prints, for each conv/linear layer, the fraction of
/// non-zero entries of dL/dy in the last iteration (before selection) and the fraction kept.
/// </summary>
internal static class StatsCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Network: paper-cnn or mlp", DefaultValueFactory = _ => "paper-cnn" };
        model.AcceptOnlyFromAmong(ModelOptions.KnownModels);
        var activation = CommonOptions.Activation();
        var batchNorm = new Option<bool>("--batch-norm") { Description = "Built-in networks: batch normalization after each hidden conv and linear layer" };
        var iterations = new Option<int>("--iterations") { Description = "Training iterations; statistics are of the last one", DefaultValueFactory = _ => 1 };
        iterations.Require(v => v >= 1, "--iterations must be >= 1");
        var batch = new Option<int>("--batch-size") { Description = "Mini-batch size", DefaultValueFactory = _ => 10 };
        batch.Require(v => v >= 1, "--batch-size must be >= 1");
        var seed = new Option<ulong>("--seed") { Description = "Seed", DefaultValueFactory = _ => 1UL };
        var data = CommonOptions.DataDirectory();
        var threads = CommonOptions.Threads();
        var meProp = new MePropCliOptions();
        var command = new Command("stats", "Print per-layer density of dL/dy (before meProp selection) and the kept fraction after N iterations")
        {
            model, activation, batchNorm, iterations, batch, seed, data, threads,
        };
        meProp.AddTo(command);
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            var options = meProp.Apply(parse, new TrainOptions
            {
                ModelOptions = new ModelOptions { Model = parse.GetValue(model)!, Activation = CommonOptions.ParseActivation(parse.GetValue(activation)!), BatchNorm = parse.GetValue(batchNorm) },
                BatchSize = parse.GetValue(batch),
                Seed = parse.GetValue(seed),
                Threads = parse.GetValue(threads),
            });
            options.Validate();
            var mnist = CommonOptions.LoadData(parse.GetValue(data));
            var train = DatasetSplit.Create(mnist.Training, options.DevSize).Train;
            using var compute = new ComputeContext(options.Threads);
            var net = Trainer.BuildModel(options, train.Channels, train.Height, train.Width, train.Classes, compute);
            var layers = net.Layers.OfType<IMePropLayer>().ToArray();
            foreach (var layer in layers) layer.Counters.MeasureDensity = true;
            var optimizer = new Adam(net.Parameters, compute.Pool, options.LearningRate);
            var loss = new SoftmaxCrossEntropy();
            var loader = new BatchLoader(train, options.BatchSize, shuffle: true, options.Seed);
            loader.StartEpoch(1);
            var images = new Tensor(0);
            var labels = new int[options.BatchSize];
            int count = parse.GetValue(iterations);
            for (int i = 0; i < count; i++)
            {
                foreach (var layer in layers) layer.Counters.Reset();
                int n = loader.FillBatch(i % loader.BatchCount, images, labels);
                loss.Forward(net.Forward(images, training: true), labels.AsSpan(0, n));
                net.Backward(loss.Gradient);
                optimizer.Update();
            }
            Console.WriteLine($"{options.ModelOptions.Model}, {options.ModelOptions.Activation.ToString().ToLowerInvariant()}{(options.ModelOptions.BatchNorm ? ", batch norm" : "")}, batch {options.BatchSize}, iteration {count}:");
            Console.WriteLine($"{"layer",-8} {"dL/dy non-zero",15} {"kept",8}");
            foreach (var layer in layers)
            {
                var c = layer.Counters.Gradient;
                Console.WriteLine($"{layer.Name,-8} {c.DensityBefore,15:P1} {c.KeptFraction,8:P1}");
            }
            return 0;
        }));
        return command;
    }
}
