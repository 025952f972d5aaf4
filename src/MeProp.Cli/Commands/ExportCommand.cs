using System.CommandLine;
using MeProp.Export;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>`meprop export`: a checkpoint as an ONNX model.</summary>
internal static class ExportCommand
{
    /// <summary>What a built-in network is rebuilt for when --input and --classes are not given: MNIST's.</summary>
    private static readonly int[] DefaultInput = [1, 28, 28];
    private const int DefaultClasses = 10;

    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "A .safetensors file written by 'meprop train', or a run directory (its best.safetensors)", Required = true };
        var onnx = new Option<string>("--onnx") { Description = "The ONNX file to write (opset 17; input 'input' [N, C, H, W] of pixels in [0, 1] ([N, F] for a network whose input is [features]), output 'logits' [N, classes])", Required = true };
        var input = new Option<string?>("--input") { Description = "C,H,W of the images a built-in network was trained on (default 1,28,28; a network file's own input otherwise)" };
        var classes = new Option<int?>("--classes") { Description = "Classes of a built-in network (default 10; a network file's own otherwise)" };
        var command = new Command("export", "Write a checkpoint's network as an ONNX model") { checkpoint, onnx, input, classes };
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            string path = parse.GetValue(checkpoint)!;
            if (Directory.Exists(path))
            {
                string best = Path.Combine(path, Trainer.BestCheckpoint);
                if (!File.Exists(best)) throw new ArgumentException($"--checkpoint: {path} is a directory without {Trainer.BestCheckpoint}; give a checkpoint file");
                path = best;
            }
            else if (!File.Exists(path)) throw new ArgumentException($"--checkpoint: {path} does not exist");
            var options = Checkpoint.ReadOptions(path);
            int[]? givenInput = parse.GetValue(input) is { } text ? ParseShape(text) : null;
            int? givenClasses = parse.GetValue(classes);
            if (givenClasses is < 1) throw new ArgumentException($"--classes must be positive, got {givenClasses}");

            int[] shape;
            int classCount;
            if (options.ModelOptions.Network is { } network)
            {
                // A network file: its input and classes are in the checkpoint; a differing --input or --classes is a mistake.
                shape = network.Input;
                classCount = network.Classes;
                if (givenInput is not null && !givenInput.AsSpan().SequenceEqual(shape))
                    throw new ArgumentException($"--input: the checkpoint's network takes [{string.Join(", ", shape)}], not [{string.Join(", ", givenInput)}]");
                if (givenClasses is not null && givenClasses != classCount)
                    throw new ArgumentException($"--classes: the checkpoint's network has {classCount} classes, not {givenClasses}");
            }
            else
            {
                shape = givenInput ?? DefaultInput;
                classCount = givenClasses ?? DefaultClasses;
            }
            // A network on flat vectors ([F]) is built for F x 1 x 1 images.
            int c = shape[0], h = shape.Length == 3 ? shape[1] : 1, w = shape.Length == 3 ? shape[2] : 1;

            using var compute = new ComputeContext(1);
            var model = ModelBuilder.Build(options.ModelOptions, c, h, w, classCount, compute, options.Seed);
            try
            {
                Checkpoint.Load(path, model, optimizer: null);
            }
            catch (CheckpointFormatException e) when (options.ModelOptions.Network is null && (givenInput is null || givenClasses is null))
            {
                throw new CheckpointFormatException($"{e.Message} (a built-in network is rebuilt for [{string.Join(", ", shape)}] images and {classCount} classes; give the run's with --input C,H,W and --classes)");
            }
            string target = parse.GetValue(onnx)!;
            OnnxExporter.Export(model, shape, target);
            Console.WriteLine($"wrote {target}: input '{OnnxExporter.InputName}' [N, {string.Join(", ", shape)}], output '{OnnxExporter.OutputName}' [N, {classCount}], opset {OnnxExporter.Opset} ({path})");
            return 0;
        }));
        return command;
    }

    /// <summary>"C,H,W" as three positive whole numbers.</summary>
    private static int[] ParseShape(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var shape = new int[parts.Length];
        bool valid = parts.Length == 3;
        for (int i = 0; i < parts.Length && valid; i++) valid = int.TryParse(parts[i], out shape[i]) && shape[i] >= 1;
        if (!valid) throw new ArgumentException($"--input must be C,H,W (three positive whole numbers), got '{text}'");
        return shape;
    }
}
