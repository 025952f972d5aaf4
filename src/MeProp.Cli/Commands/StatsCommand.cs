using System.CommandLine;
using System.Globalization;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Losses;
using MeProp.Models;
using MeProp.Optimizers;
using MeProp.Tensors;
using MeProp.Training;

namespace MeProp.Cli.Commands;

/// <summary>
/// `meprop stats`: trains N iterations and prints, for each conv/linear layer (inside blocks too), the
/// fraction of non-zero entries of dL/dy in the last iteration (before selection), the fraction kept, and
/// how far the weight gradient points along the weights: the mean over output channels of
/// |cos(w_u, dL/dw_u)|. A layer followed by batch norm does not change the loss when a filter is scaled,
/// so its true gradient is orthogonal to the filter (cosine 0 up to rounding); a selection that breaks
/// this changes the filters' scale as it trains. The last column compares each layer's weight gradient with
/// the exact one on the same batch and weights (a second forward and a backward without selection): their
/// cosine, 1 where the gradient is exact; layers without selection of their own fall below 1 when a selecting
/// layer after them has passed back an approximate dL/dx. (With dropout the second forward draws new masks.)
/// </summary>
internal static class StatsCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var activation = CommonOptions.Activation();
        var batchNorm = new Option<bool>("--batch-norm") { Description = "Built-in networks: batch normalization after each hidden conv and linear layer" };
        var iterations = new Option<int>("--iterations") { Description = "Training iterations; statistics are of the last one", DefaultValueFactory = _ => 1 };
        iterations.Require(v => v >= 1, "--iterations must be >= 1");
        var batch = new Option<int>("--batch-size") { Description = "Mini-batch size", DefaultValueFactory = _ => 10 };
        batch.Require(v => v >= 1, "--batch-size must be >= 1");
        var seed = new Option<ulong>("--seed") { Description = "Seed", DefaultValueFactory = _ => 1UL };
        var devSize = new Option<int>("--dev-size") { Description = "Training images left out as the dev split (the first N), as in train", DefaultValueFactory = _ => 5000 };
        devSize.Require(v => v >= 0, "--dev-size must be >= 0");
        var maxTrain = new Option<int?>("--max-train") { Description = "Use only the first N training images (after the dev split), as in train" };
        maxTrain.Require(v => v is null or >= 1, "--max-train must be >= 1");
        var normalize = new Option<bool>("--normalize") { Description = "Normalise the input per channel with the mean and std of the training split, as train --normalize" };
        var data = CommonOptions.DataDirectory();
        var threads = CommonOptions.Threads();
        var meProp = new MePropCliOptions();
        var command = new Command("stats", "Print per-layer density of dL/dy (before meProp selection) and the kept fraction after N iterations")
        {
            model, activation, batchNorm, iterations, batch, seed, devSize, maxTrain, normalize, data, threads,
        };
        meProp.AddTo(command);
        command.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            var options = meProp.Apply(parse, new TrainOptions
            {
                ModelOptions = CommonOptions.ModelOptions(parse.GetValue(model)!) with
                {
                    Activation = CommonOptions.ParseActivation(parse.GetValue(activation)!),
                    BatchNorm = parse.GetValue(batchNorm),
                },
                BatchSize = parse.GetValue(batch),
                Seed = parse.GetValue(seed),
                DevSize = parse.GetValue(devSize),
                MaxTrain = parse.GetValue(maxTrain),
                Threads = parse.GetValue(threads),
            });
            options.Validate();
            var mnist = CommonOptions.LoadData(parse.GetValue(data));
            var train = DatasetSplit.Create(mnist.Training, options.DevSize, options.MaxTrain).Train;
            if (parse.GetValue(normalize))
            {
                var (mean, std) = train.ChannelStatistics();
                options = options with { ModelOptions = options.ModelOptions with { Normalization = new InputNormalization(mean, std) } };
            }
            using var compute = new ComputeContext(options.Threads);
            var net = Trainer.BuildModel(options, train.Channels, train.Height, train.Width, train.Classes, compute);
            var layers = net.AllLayers.OfType<IMePropLayer>().ToArray();
            var cosines = new double[layers.Length];
            var fidelity = Array.Empty<double>();
            var density = new double[layers.Length];
            var kept = new double[layers.Length];
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
                var dropoutStates = DropoutStates(net);
                loss.Forward(net.Forward(images, training: true), labels.AsSpan(0, n));
                net.Backward(loss.Gradient);
                if (i < count - 1)
                {
                    optimizer.Update();
                    continue;
                }
                var weights = layers.Select(l => l.Parameters.First(p => p.Name.EndsWith(".weight", StringComparison.Ordinal))).ToArray();
                for (int l = 0; l < layers.Length; l++)
                {
                    cosines[l] = MeanAbsoluteCosine(weights[l]);
                    (density[l], kept[l]) = (layers[l].Counters.Gradient.DensityBefore, layers[l].Counters.Gradient.KeptFraction);
                }
                fidelity = ExactGradientCosines(net, layers, weights, loss, images, labels.AsSpan(0, n), dropoutStates);
            }
            string normalised = options.ModelOptions.Normalization is { } input
                ? $", input normalised by mean {string.Join(",", input.Mean.Select(v => v.ToString("F4", CultureInfo.InvariantCulture)))} std {string.Join(",", input.Std.Select(v => v.ToString("F4", CultureInfo.InvariantCulture)))}"
                : "";
            Console.WriteLine($"{options.ModelOptions.Model}, {options.ModelOptions.Activation.ToString().ToLowerInvariant()}{(options.ModelOptions.BatchNorm ? ", batch norm" : "")}{normalised}, batch {options.BatchSize}, iteration {count}:");
            int width = Math.Max(8, layers.Max(l => l.Name.Length));
            Console.WriteLine($"{"layer".PadRight(width)} {"dL/dy non-zero",15} {"kept",8} {"|cos(w, dL/dw)|",16} {"cos(dL/dw, exact)",18}");
            for (int l = 0; l < layers.Length; l++)
                Console.WriteLine($"{layers[l].Name.PadRight(width)} {density[l],15:P1} {kept[l],8:P1} {cosines[l],16:F4} {fidelity[l],18:F4}");
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// Per layer, the cosine between the gradient of its weight (<paramref name="weights"/>) that the backward
    /// just run left in it, with the selection, and the exact gradient on the same batch and weights, from a
    /// second forward and a backward with every layer's selection switched off (it stays off). The dropout layers
    /// are set back to <paramref name="dropoutStates"/> (<see cref="DropoutStates"/> before the first forward), so
    /// that the second forward draws the same masks: the same network, only the selection differs.
    /// </summary>
    internal static double[] ExactGradientCosines(Sequential net, IMePropLayer[] layers, Parameter[] weights, SoftmaxCrossEntropy loss,
        Tensor images, ReadOnlySpan<int> labels, ulong[][] dropoutStates)
    {
        var selected = weights.Select(w => w.Gradient.Span.ToArray()).ToArray();
        var dropouts = net.AllLayers.OfType<Dropout>().ToArray();
        for (int d = 0; d < dropouts.Length; d++) dropouts[d].Rng.SetState(dropoutStates[d]);
        foreach (var layer in layers) layer.Sparsifier = null;
        foreach (var parameter in net.Parameters) parameter.Gradient.Clear();
        loss.Forward(net.Forward(images, training: true), labels);
        net.Backward(loss.Gradient);
        return weights.Select((w, l) => Cosine(selected[l], w.Gradient.Span)).ToArray();
    }

    /// <summary>The generator state of each dropout layer, in layer order.</summary>
    internal static ulong[][] DropoutStates(Sequential net) => net.AllLayers.OfType<Dropout>().Select(d => d.Rng.GetState()).ToArray();

    /// <summary>a · b / (|a| |b|) in double; NaN when either is zero (no direction to compare).</summary>
    internal static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double dot = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            aa += (double)a[i] * a[i];
            bb += (double)b[i] * b[i];
        }
        return aa == 0 || bb == 0 ? double.NaN : dot / Math.Sqrt(aa * bb);
    }

    /// <summary>Mean over the output channels u of |w_u · g_u| / (|w_u| |g_u|), w [OC, ...] and its gradient g; channels whose w or g is zero left out.</summary>
    internal static double MeanAbsoluteCosine(Parameter weight)
    {
        int rows = weight.Value.Shape[0], length = weight.Value.Length / rows;
        double sum = 0;
        int counted = 0;
        for (int u = 0; u < rows; u++)
        {
            double cosine = Cosine(weight.Value.Span.Slice(u * length, length), weight.Gradient.Span.Slice(u * length, length));
            if (double.IsNaN(cosine)) continue;
            sum += Math.Abs(cosine);
            counted++;
        }
        return counted == 0 ? 0 : sum / counted;
    }
}
