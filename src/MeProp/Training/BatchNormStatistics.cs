using MeProp.Data;
using MeProp.Layers;
using MeProp.Models;
using MeProp.Tensors;

namespace MeProp.Training;

/// <summary>
/// Recomputes the running statistics of every batch norm layer of a model from data, as PyTorch's
/// torch.optim.swa_utils.update_bn: the estimates are reset, the images go through the model in
/// training mode batch by batch (in order, no backward, parameters untouched), and each layer's running
/// mean and variance become the plain average of the batches' statistics. For weights that moved faster
/// than the running estimates followed during training, or averaged weights whose estimates were never
/// computed.
/// </summary>
public static class BatchNormStatistics
{
    /// <summary>
    /// Recomputes the running statistics of <paramref name="model"/>'s batch norm layers (those inside
    /// blocks too) from <paramref name="data"/> in batches of <paramref name="batchSize"/>; a last batch
    /// of one image is left out (a [1, C] input has one value per channel: no variance). Each layer's
    /// momentum is restored afterwards. Returns the number of batch norm layers (0: nothing to do).
    /// </summary>
    public static int Recompute(Sequential model, Dataset data, int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 2);
        var layers = model.AllLayers.OfType<BatchNorm>().ToList();
        if (layers.Count == 0) return 0;
        if (data.Count < 2) throw new ArgumentException($"recomputing batch norm statistics needs at least 2 images, got {data.Count}");
        var momentum = layers.Select(l => l.Momentum).ToList();
        try
        {
            foreach (var layer in layers)
            {
                layer.ResetRunningStatistics();
                layer.Momentum = null;
            }
            var loader = new BatchLoader(data, batchSize, shuffle: false);
            loader.StartEpoch(0);
            var images = new Tensor(0);
            var labels = new int[batchSize];
            for (int batch = 0; batch < loader.BatchCount; batch++)
            {
                if (loader.FillBatch(batch, images, labels) < 2) break;
                model.Forward(images, training: true);
            }
        }
        finally
        {
            for (int i = 0; i < layers.Count; i++) layers[i].Momentum = momentum[i];
        }
        return layers.Count;
    }
}
