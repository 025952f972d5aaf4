using System.CommandLine;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>`meprop eval`: test accuracy of a checkpoint.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "A .safetensors file written by 'meprop train', or a run directory (its best.safetensors)", Required = true };
        var data = CommonOptions.DataDirectory();
        var threads = CommonOptions.Threads();
        var recompute = new Option<bool>("--recompute-batch-norm")
        {
            Description = "Recompute the batch norm layers' running statistics from the checkpoint's training images (after its dev split, " +
                          "in batches of its training batch size; PyTorch's update_bn) and report the test accuracy before and after",
        };
        var command = new Command("eval", "Report the test accuracy of a checkpoint") { checkpoint, data, threads, recompute };
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            string path = CheckpointPath(parse.GetValue(checkpoint)!);
            var options = Checkpoint.ReadOptions(path);
            var mnist = MeProp.Data.DataDirectory.Load(CommonOptions.RunDataDirectory(parse.GetValue(data), options));
            using var compute = new ComputeContext(parse.GetValue(threads));
            var test = mnist.Test;
            var model = ModelBuilder.Build(options.ModelOptions, test.Channels, test.Height, test.Width, test.Classes, compute, options.Seed);
            Checkpoint.Load(path, model, optimizer: null);
            model.SetExactSparsity(options.ExactSparsity);
            double accuracy = Trainer.Evaluate(model, test, options.EvalBatchSize);
            Console.WriteLine($"test accuracy {accuracy:F4} ({test.Count} images, {path})");
            if (!parse.GetValue(recompute)) return 0;
            var train = DatasetSplit.Create(mnist.Training, options.DevSize, options.MaxTrain).Train;
            // A batch of one image has no variance per channel for [N, C] inputs; such runs use pairs.
            int layers = BatchNormStatistics.Recompute(model, train, Math.Max(2, options.BatchSize));
            if (layers == 0) throw new ArgumentException("--recompute-batch-norm: the network has no batch norm layer");
            accuracy = Trainer.Evaluate(model, test, options.EvalBatchSize);
            Console.WriteLine($"test accuracy {accuracy:F4} after recomputing {layers} batch norm layers' statistics from {train.Count} training images");
            return 0;
        }));
        return command;
    }

    /// <summary>A checkpoint file as given, or a run directory's best.safetensors; a missing one is an error naming it.</summary>
    public static string CheckpointPath(string given)
    {
        if (Directory.Exists(given))
        {
            // A run directory: its best checkpoint is what the run's result refers to.
            string best = Path.Combine(given, Trainer.BestCheckpoint);
            if (!File.Exists(best)) throw new ArgumentException($"--checkpoint: {given} is a directory without {Trainer.BestCheckpoint}; give a checkpoint file");
            return best;
        }
        if (!File.Exists(given)) throw new ArgumentException($"--checkpoint: {given} does not exist");
        return given;
    }
}
