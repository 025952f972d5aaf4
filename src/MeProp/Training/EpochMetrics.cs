using System.Text.Json.Serialization;

namespace MeProp.Training;

/// <summary>One line of metrics.jsonl. Accuracies are fractions in [0, 1]; times in seconds.</summary>
public sealed record EpochMetrics
{
    [JsonPropertyName("epoch")] public int Epoch { get; init; }
    /// <summary>What went wrong in the epoch without stopping it (a loss that explodes); absent when nothing did.</summary>
    [JsonPropertyName("warnings"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public List<string>? Warnings { get; init; }
    [JsonPropertyName("train_loss")] public double TrainLoss { get; init; }
    [JsonPropertyName("train_accuracy")] public double TrainAccuracy { get; init; }
    [JsonPropertyName("dev_accuracy")] public double? DevAccuracy { get; init; }
    [JsonPropertyName("test_accuracy")] public double TestAccuracy { get; init; }
    [JsonPropertyName("epoch_seconds")] public double EpochSeconds { get; init; }
    [JsonPropertyName("forward_seconds")] public double ForwardSeconds { get; init; }
    [JsonPropertyName("backward_seconds")] public double BackwardSeconds { get; init; }
    /// <summary>The optimizer's own pass; with a fused update (TrainOptions.FusedUpdate) the linear layers' share is in their backward.</summary>
    [JsonPropertyName("update_seconds")] public double UpdateSeconds { get; init; }
    [JsonPropertyName("eval_seconds")] public double EvalSeconds { get; init; }
    [JsonPropertyName("backward_seconds_per_layer")] public Dictionary<string, double> BackwardSecondsPerLayer { get; init; } = [];
    /// <summary>Multiply-adds performed by each conv/linear layer's backward (dW and dx) over the epoch.</summary>
    [JsonPropertyName("backward_macs")] public Dictionary<string, long> BackwardMacs { get; init; } = [];
    /// <summary>What the dense backward of the same layers would have performed.</summary>
    [JsonPropertyName("dense_backward_macs")] public Dictionary<string, long> DenseBackwardMacs { get; init; } = [];
    /// <summary>Fraction of dL/dy entries that were non-zero before selection (meProp layers).</summary>
    [JsonPropertyName("gradient_density")] public Dictionary<string, double> GradientDensity { get; init; } = [];
    /// <summary>Fraction of dL/dy entries kept by the selection (meProp layers).</summary>
    [JsonPropertyName("kept_fraction")] public Dictionary<string, double> KeptFraction { get; init; } = [];
    /// <summary>The ratio each meProp layer had in the epoch; written only when the run has a <see cref="TopKSchedule"/>.</summary>
    [JsonPropertyName("topk_ratio"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public Dictionary<string, double>? TopKRatio { get; init; }
}

/// <summary>summary.json: the configuration and the result under the paper's protocol (test accuracy at the best dev epoch).</summary>
public sealed record TrainSummary
{
    [JsonPropertyName("config")] public required TrainOptions Config { get; init; }
    [JsonPropertyName("best_epoch")] public int BestEpoch { get; init; }
    [JsonPropertyName("dev_accuracy")] public double? DevAccuracy { get; init; }
    [JsonPropertyName("test_accuracy")] public double TestAccuracy { get; init; }
    [JsonPropertyName("final_test_accuracy")] public double FinalTestAccuracy { get; init; }
    /// <summary>Wall-clock seconds of the completed epochs, each epoch's evaluation of dev and test included.</summary>
    [JsonPropertyName("train_seconds")] public double TrainSeconds { get; init; }
    [JsonPropertyName("epochs_completed")] public int EpochsCompleted { get; init; }
    [JsonPropertyName("parameter_count")] public long ParameterCount { get; init; }
}
