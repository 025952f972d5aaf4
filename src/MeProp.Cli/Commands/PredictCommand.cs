using System.CommandLine;
using System.Text.Json;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Tensors;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>`meprop predict`: the top classes of images (files, or a data directory's test images) under a checkpoint.</summary>
internal static class PredictCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "A checkpoint written by 'meprop train', or a run directory (its best.safetensors)", Required = true };
        var images = new Argument<string[]>("images") { Description = "Image files (PNG, JPEG, BMP) of the network's input size", Arity = ArgumentArity.ZeroOrMore };
        var data = new Option<string?>("--data") { Description = "Predict the first --count test images of this data directory instead of files" };
        var count = new Option<int>("--count") { Description = "With --data: how many test images", DefaultValueFactory = _ => 10 }.Require(v => v >= 1, "--count must be >= 1");
        var top = new Option<int>("--top") { Description = "Classes shown per image", DefaultValueFactory = _ => 3 }.Require(v => v >= 1, "--top must be >= 1");
        var json = new Option<bool>("--json") { Description = "One JSON object per image instead of text" };
        var command = new Command("predict", "Print the most probable classes of images under a trained model") { checkpoint, images, data, count, top, json };
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            string path = EvalCommand.CheckpointPath(parse.GetValue(checkpoint)!);
            var options = Checkpoint.ReadOptions(path);
            var files = parse.GetValue(images) ?? [];
            string? dataDirectory = parse.GetValue(data);
            if ((files.Length == 0) == (dataDirectory is null)) throw new ArgumentException("give image files or --data DIR (one of the two)");

            // The inputs: named files, or the data directory's first test images with their labels.
            int[] shape;
            int? dataClasses = null;
            List<(string Name, float[] Pixels, int? Label)> inputs = [];
            if (dataDirectory is not null)
            {
                var test = MeProp.Data.DataDirectory.Load(dataDirectory).Test;
                shape = [test.Channels, test.Height, test.Width];
                dataClasses = test.Classes;
                int size = test.ImageSize;
                for (int n = 0; n < Math.Min(parse.GetValue(count), test.Count); n++)
                    inputs.Add(($"test image {n}", test.Images.Span.Slice(n * size, size).ToArray(), test.Labels.Span[n]));
            }
            else
            {
                int[]? networkShape = options.ModelOptions.Network?.Input switch { { Length: 3 } input => input, [_] => null, _ => [1, 28, 28] };
                shape = networkShape ?? [];
                foreach (string file in files)
                {
                    var (width, height, _) = ImageFiles.Info(file);
                    if (networkShape is null && shape.Length == 0)
                    {
                        // A network with input [features] takes images flattened: the first file's size says their shape.
                        int features = options.ModelOptions.Network!.Input[0];
                        int channels = features / (width * height);
                        if (channels is not (1 or 3) || channels * width * height != features)
                            throw new ArgumentException($"{file}: {width}x{height} pixels, the network takes {features} values per image (1 or 3 channels of its pixels)");
                        shape = [channels, height, width];
                    }
                    if (width != shape[2] || height != shape[1])
                        throw new ArgumentException($"{file}: {width}x{height} pixels, the network takes {shape[2]}x{shape[1]}");
                    var pixels = new float[shape[0] * shape[1] * shape[2]];
                    ImageFiles.Decode(file, shape[0], pixels);
                    inputs.Add((file, pixels, null));
                }
            }
            int classes = options.ModelOptions.Network?.Classes ?? options.ModelOptions.ClassNames?.Length ?? MnistFiles.Classes;
            if (dataClasses > classes)
                throw new ArgumentException($"{dataDirectory}: its labels are of {dataClasses} classes, the network's outputs of {classes}");
            using var compute = new ComputeContext(1);
            var model = ModelBuilder.Build(options.ModelOptions, shape[0], shape[1], shape[2], classes, compute, options.Seed);
            Checkpoint.Load(path, model, optimizer: null);
            model.SetExactSparsity(options.ExactSparsity);
            var names = options.ModelOptions.ClassNames is { } known && known.Length == classes ? known : Enumerable.Range(0, classes).Select(c => c.ToString()).ToArray();

            var batch = new Tensor(inputs.Count, shape[0], shape[1], shape[2]);
            for (int n = 0; n < inputs.Count; n++) inputs[n].Pixels.CopyTo(batch.Span.Slice(n * inputs[n].Pixels.Length));
            float[] probabilities = Prediction.Predict(model, batch);
            int shown = Math.Min(parse.GetValue(top), classes);
            for (int n = 0; n < inputs.Count; n++)
            {
                var row = probabilities.AsSpan(n * classes, classes).ToArray();
                var best = Enumerable.Range(0, classes).OrderByDescending(c => row[c]).ThenBy(c => c).Take(shown).ToList();
                if (parse.GetValue(json))
                    Console.WriteLine(JsonSerializer.Serialize(new
                    {
                        image = inputs[n].Name,
                        label = inputs[n].Label is int l ? names[l] : null,
                        top = best.Select(c => new { @class = names[c], probability = Math.Round(row[c], 6) }),
                    }));
                else
                    Console.WriteLine($"{inputs[n].Name}{(inputs[n].Label is int label ? $" (label {names[label]})" : "")}: " +
                                      string.Join(", ", best.Select(c => $"{names[c]} {row[c]:P1}")));
            }
            return 0;
        }));
        return command;
    }
}
