using System.Text.Json.Serialization;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Sparsity;

namespace MeProp.Training;

/// <summary>Every option of a training run; echoed in summary.json and stored in checkpoints for resume.</summary>
public sealed record TrainOptions
{
    public ModelOptions ModelOptions { get; init; } = new();
    public int Epochs { get; init; } = 1;
    /// <summary>Mini-batch size; the paper uses 10.</summary>
    public int BatchSize { get; init; } = 10;
    /// <summary>"adam" or "sgd".</summary>
    public string Optimizer { get; init; } = "adam";
    public float LearningRate { get; init; } = 1e-3f;
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    public float Epsilon { get; init; } = 1e-8f;
    /// <summary>SGD only.</summary>
    public float Momentum { get; init; } = 0.9f;
    public ulong Seed { get; init; } = 1;
    public int Threads { get; init; } = Environment.ProcessorCount;
    /// <summary>Images taken from the start of the training file as the dev split.</summary>
    public int DevSize { get; init; } = 5000;
    /// <summary>Use only the first N training images after the dev split; null for all.</summary>
    public int? MaxTrain { get; init; }
    /// <summary>Batch size for evaluation, which needs no backward and so can be larger.</summary>
    public int EvalBatchSize { get; init; } = 100;
    /// <summary>
    /// With Adam, the update is applied during the backward where that pays (Adam.FuseIntoBackward: dense
    /// linear layers at batches up to FusedLinearAdam.BatchLimit); the results are the same bit for bit, only faster.
    /// False is `--no-fused-update`.
    /// </summary>
    public bool FusedUpdate { get; init; } = true;

    /// <summary>
    /// Whether the dense backward of conv and linear layers (those without meProp) runs on the non-zero
    /// entries of dL/dy only, when they are few (<see cref="Layers.ExactSparsity"/>): the same gradients
    /// within float rounding, less work. Configurations written before this option existed read as Off,
    /// the arithmetic they were trained with.
    /// </summary>
    public ExactSparsity ExactSparsity { get; init; } = ExactSparsity.Auto;

    /// <summary>Training augmentation: random crop after zero-padding by this many pixels (0: none).</summary>
    public int AugmentPadding { get; init; }
    /// <summary>Training augmentation: mirror each image left-right with probability 1/2.</summary>
    public bool AugmentFlip { get; init; }

    /// <summary>meProp top-k ratio in (0, 1]; null trains dense.</summary>
    public double? TopK { get; init; }
    /// <summary>Running-gradient decay (paper eq. 15); 0 selects on the current gradient.</summary>
    public double Decay { get; init; }
    public DecayShape DecayShape { get; init; } = DecayShape.Full;
    /// <summary>Selection policy; null gives per-channel for conv layers and per-example for linear ones.
    /// A conv policy applies to the conv layers, a linear one to the linear layers, random to both.</summary>
    public SelectionPolicy? Selection { get; init; }
    /// <summary>Layers whose backward is sparsified; null means <see cref="MePropSetup.DefaultLayers(Sequential)"/> (every conv layer but the output layer, the paper's setting; in a network without one, every linear layer but the output layer).</summary>
    public string[]? MePropLayers { get; init; }
    /// <summary>
    /// meProp ratio per layer name (`--topk conv1=0.1,conv2=0.05`), each in (0, 1]: overrides
    /// <see cref="TopK"/> for the layers named, which must be meProp layers. Without TopK the layers named
    /// are the ones sparsified (or, with <see cref="MePropLayers"/>, each of those must be named). Null
    /// when absent (and then not written, so configurations without it read and write as before).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Dictionary<string, double>? LayerRatios { get; init; }

    /// <summary>
    /// The meProp ratio over the epochs (`--topk-schedule`, `--dense-warmup`, `--dense-every`); null for a
    /// fixed ratio (and then not written, so configurations without it read and write as before).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public TopKSchedule? TopKSchedule { get; init; }

    /// <summary>
    /// Adaptive k on every meProp layer (`--topk-mass`, <see cref="MePropOptions.MassFraction"/>): the ratio
    /// becomes the most each pool keeps. Null for a fixed k (and then not written, so configurations
    /// without it read and write as before).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? MassFraction { get; init; }

    /// <summary>
    /// Every meProp layer's kept values shifted to mean zero per unit (`--topk-zero-mean`,
    /// <see cref="MePropOptions.ZeroMean"/>), for layers that batch norm follows. Written only when set, so
    /// configurations without it read and write as before.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool ZeroMean { get; init; }

    /// <summary>
    /// The data directory the run reads and a fingerprint of its images (the CLI records them so that
    /// `--resume` and `meprop eval` read the same images); null where the caller hands the data sets over
    /// itself, and in configurations written before it existed (then not written).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Data.DataSource? Data { get; init; }

    /// <summary>Whether meProp is on: a ratio for every chosen layer or ratios per layer.</summary>
    [JsonIgnore]
    public bool UsesMeProp => TopK is not null || LayerRatios is { Count: > 0 };

    /// <summary>Throws an ArgumentException naming the first property out of range.</summary>
    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentException($"Epochs must be >= 1, got {Epochs}");
        if (BatchSize < 1) throw new ArgumentException($"BatchSize must be >= 1, got {BatchSize}");
        if (!(LearningRate > 0) || float.IsInfinity(LearningRate)) throw new ArgumentException($"LearningRate must be a positive number, got {LearningRate}");
        if (Optimizer is not ("adam" or "sgd")) throw new ArgumentException($"Optimizer must be adam or sgd, got '{Optimizer}'");
        if (Threads < 1) throw new ArgumentException($"Threads must be >= 1, got {Threads}");
        if (DevSize < 0) throw new ArgumentException($"DevSize must be >= 0, got {DevSize}");
        if (MaxTrain is < 1) throw new ArgumentException($"MaxTrain must be >= 1, got {MaxTrain}");
        if (AugmentPadding < 0) throw new ArgumentException($"AugmentPadding must be >= 0, got {AugmentPadding}");
        if (EvalBatchSize < 1) throw new ArgumentException($"eval batch size must be >= 1, got {EvalBatchSize}");
        if (ModelOptions.Network is null && !ModelOptions.KnownModels.Contains(ModelOptions.Model))
            throw new ArgumentException($"ModelOptions.Model must be one of {string.Join(", ", ModelOptions.KnownModels)}, got '{ModelOptions.Model}'");
        if (ModelOptions.HiddenSize < 1) throw new ArgumentException($"ModelOptions.HiddenSize must be >= 1, got {ModelOptions.HiddenSize}");
        if (ModelOptions.HiddenLayers < 0) throw new ArgumentException($"ModelOptions.HiddenLayers must be >= 0, got {ModelOptions.HiddenLayers}");
        if (TopK is double k && !(k > 0 && k <= 1)) throw new ArgumentException($"TopK must be in (0, 1], got {k}");
        if (!(Decay >= 0 && Decay < 1)) throw new ArgumentException($"Decay must be in [0, 1), got {Decay}");
        if (LayerRatios is not null)
            foreach (var (layer, ratio) in LayerRatios)
                if (!(ratio > 0 && ratio <= 1)) throw new ArgumentException($"the top-k ratio of layer '{layer}' must be in (0, 1], got {ratio}");
        TopKSchedule?.Validate();
        if (MassFraction is double f && !(f > 0 && f <= 1)) throw new ArgumentException($"MassFraction must be in (0, 1], got {f}");
        if (!UsesMeProp && (Decay != 0 || Selection is not null || MePropLayers is not null || MassFraction is not null || ZeroMean))
            throw new ArgumentException("Decay, Selection, MePropLayers, MassFraction and ZeroMean need TopK (meProp is off without it)");
    }
}
