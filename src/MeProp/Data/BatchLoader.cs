using MeProp.Tensors;

namespace MeProp.Data;

/// <summary>
/// Walks a <see cref="Dataset"/> in mini-batches of <see cref="BatchSize"/> images; the last batch holds
/// the remainder and may be smaller. When shuffling, the order of epoch e is a permutation drawn from
/// <c>Rng.ForStream(seed, e)</c>, so it depends on nothing but the seed and the epoch number: resuming at
/// epoch e needs only the seed. Batches are copied into caller-owned buffers; nothing is allocated per
/// batch but the tensor's new shape array when it changes between a full and the last, smaller batch.
/// </summary>
public sealed class BatchLoader
{
    private readonly Dataset _data;
    private readonly bool _shuffle;
    private readonly ulong _seed;
    private readonly int[] _order;
    private readonly int _lastBatchSize;
    private bool _epochStarted;

    /// <param name="data">The images to walk; at least one.</param>
    /// <param name="batchSize">Images per batch, at least 1.</param>
    /// <param name="shuffle">True for a new permutation each epoch (training), false for index order (evaluation).</param>
    /// <param name="seed">Seed of the per-epoch permutations; unused without shuffling.</param>
    public BatchLoader(Dataset data, int batchSize, bool shuffle, ulong seed = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (data.Count == 0) throw new ArgumentException("the data set is empty", nameof(data));
        _data = data;
        _shuffle = shuffle;
        _seed = seed;
        BatchSize = batchSize;
        BatchCount = (data.Count + batchSize - 1) / batchSize;
        _order = new int[data.Count];
        for (int i = 0; i < _order.Length; i++) _order[i] = i;
        _lastBatchSize = data.Count - (BatchCount - 1) * batchSize;
    }

    /// <summary>Images in every batch but perhaps the last.</summary>
    public int BatchSize { get; }

    /// <summary>Batches per epoch, the last partial batch included: ceil(Count / BatchSize).</summary>
    public int BatchCount { get; }

    /// <summary>
    /// Sets the order for <paramref name="epoch"/> (the trainer counts epochs from 1): a fresh permutation when
    /// shuffling, index order otherwise. Must be called before the first <see cref="FillBatch"/> when shuffling.
    /// </summary>
    public void StartEpoch(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        _epochStarted = true;
        if (!_shuffle) return;
        for (int i = 0; i < _order.Length; i++) _order[i] = i;
        Rng.ForStream(_seed, (ulong)epoch).Shuffle(_order);
    }

    /// <summary>
    /// Copies batch <paramref name="batch"/> of the current epoch: reshapes <paramref name="images"/> to
    /// [n, C, H, W] (its storage grows only if too small) and writes n labels to the start of
    /// <paramref name="labels"/>. Returns n, which is <see cref="BatchSize"/> except perhaps for the last batch.
    /// </summary>
    /// <param name="batch">0 up to <see cref="BatchCount"/> - 1.</param>
    /// <param name="images">Receives the images, [n, C, H, W].</param>
    /// <param name="labels">Receives the labels; at least <see cref="BatchSize"/> long.</param>
    public int FillBatch(int batch, Tensor images, Span<int> labels)
    {
        if ((uint)batch >= (uint)BatchCount)
            throw new ArgumentOutOfRangeException(nameof(batch), $"batch {batch} of {BatchCount}");
        if (_shuffle && !_epochStarted)
            throw new InvalidOperationException("call StartEpoch before the first batch when shuffling");
        if (labels.Length < BatchSize)
            throw new ArgumentException($"the label buffer holds {labels.Length}, a batch needs {BatchSize}", nameof(labels));

        int count = batch == BatchCount - 1 ? _lastBatchSize : BatchSize;
        images.Reshape(count, _data.Channels, _data.Height, _data.Width);

        int imageSize = _data.ImageSize;
        ReadOnlySpan<float> sourceImages = _data.Images.Span;
        ReadOnlySpan<byte> sourceLabels = _data.Labels.Span;
        Span<float> destination = images.Span;
        int first = batch * BatchSize;
        for (int i = 0; i < count; i++)
        {
            int index = _order[first + i];
            sourceImages.Slice(index * imageSize, imageSize).CopyTo(destination.Slice(i * imageSize, imageSize));
            labels[i] = sourceLabels[index];
        }
        return count;
    }
}
