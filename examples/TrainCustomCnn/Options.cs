using System.Globalization;
using MeProp.Data;

namespace TrainCustomCnn;

/// <summary>The command line: a data directory and a few training options, parsed by hand to stay dependency-free.</summary>
sealed class Options
{
    public const string Usage =
        "usage: TrainCustomCnn [DATA_DIR] [--out DIR] [--epochs N] [--max-train N] [--dev-size N] [--batch-size N]\n" +
        "                      [--lr LR] [--meprop-layer conv1|conv2|fc1|none] [--topk RATIO] [--decay D] [--threads N] [--seed N]\n" +
        "  DATA_DIR      the four MNIST-layout IDX files (default: $MEPROP_DATA or ~/.cache/meprop/mnist)\n" +
        "  --out         directory for checkpoints, metrics.jsonl and summary.json (default runs/train-custom-cnn; must not hold a run)\n" +
        "  --epochs      default 2; --max-train: first N training images after the dev split (default all)\n" +
        "  --dev-size    default 5000; --batch-size default 10; --lr default 0.001 (Adam)\n" +
        "  --meprop-layer default conv2; --topk default 0.05; --decay default 0.6 (the meProp-CNN paper's)";

    public string DataDirectory { get; private set; } = MnistFetcher.DefaultCacheDirectory();
    public string OutDirectory { get; private set; } = Path.Combine("runs", "train-custom-cnn");
    public int Epochs { get; private set; } = 2;
    public int? MaxTrain { get; private set; }
    public int DevSize { get; private set; } = DatasetSplit.DefaultDevSize;
    public int BatchSize { get; private set; } = 10;
    public float LearningRate { get; private set; } = 1e-3f;
    public string? MePropLayer { get; private set; } = "conv2";
    public double TopK { get; private set; } = 0.05;
    public double Decay { get; private set; } = 0.6;
    public int Threads { get; private set; } = Environment.ProcessorCount;
    public ulong Seed { get; private set; } = 1;
    public bool Help { get; private set; }

    // Hidden (CI): --write-synthetic DIR [--synthetic-train N] [--synthetic-test N] writes a tiny IDX set and exits.
    public string? SyntheticDirectory { get; private set; }
    public int SyntheticTrain { get; private set; } = 400;
    public int SyntheticTest { get; private set; } = 100;

    public static Options Parse(string[] args)
    {
        var o = new Options();
        bool dataGiven = false;
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{arg} needs a value");
            switch (arg)
            {
                case "-h" or "--help": o.Help = true; break;
                case "--out": o.OutDirectory = Value(); break;
                case "--epochs": o.Epochs = Int(arg, Value(), min: 1); break;
                case "--max-train": o.MaxTrain = Int(arg, Value(), min: 1); break;
                case "--dev-size": o.DevSize = Int(arg, Value(), min: 0); break;
                case "--batch-size": o.BatchSize = Int(arg, Value(), min: 1); break;
                case "--lr": o.LearningRate = (float)Number(arg, Value(), 0, double.PositiveInfinity); break;
                case "--meprop-layer":
                    string layer = Value();
                    o.MePropLayer = layer == "none" ? null : layer;
                    break;
                case "--topk": o.TopK = Number(arg, Value(), 0, 1); break;
                case "--decay": o.Decay = Number(arg, Value(), 0, 1, maxIncluded: false, minIncluded: true); break;
                case "--threads": o.Threads = Int(arg, Value(), min: 1); break;
                case "--seed": o.Seed = ulong.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong s) ? s : throw new ArgumentException($"{arg}: expected a non-negative integer, got '{args[i]}'"); break;
                case "--write-synthetic": o.SyntheticDirectory = Value(); break;
                case "--synthetic-train": o.SyntheticTrain = Int(arg, Value(), min: 10); break;
                case "--synthetic-test": o.SyntheticTest = Int(arg, Value(), min: 1); break;
                default:
                    if (arg.StartsWith('-') || dataGiven) throw new ArgumentException($"unexpected argument '{arg}'");
                    o.DataDirectory = arg;
                    dataGiven = true;
                    break;
            }
        }
        return o;
    }

    private static int Int(string option, string text, int min) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value) && value >= min
            ? value
            : throw new ArgumentException($"{option}: expected an integer >= {min}, got '{text}'");

    /// <summary>A number in (min, max] (by default), as meProp's ratio (0, 1] and a decay in [0, 1).</summary>
    private static double Number(string option, string text, double min, double max, bool maxIncluded = true, bool minIncluded = false)
    {
        bool ok = double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value)
                  && (minIncluded ? value >= min : value > min) && (maxIncluded ? value <= max : value < max);
        return ok ? value : throw new ArgumentException(
            $"{option}: expected a number in {(minIncluded ? "[" : "(")}{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}{(maxIncluded ? "]" : ")")}, got '{text}'");
    }
}
