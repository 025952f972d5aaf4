using MeProp.Tensors;

namespace MeProp.Data;

/// <summary>
/// Training-time augmentation of a batch in place, as torchvision's RandomCrop(size, padding) and
/// RandomHorizontalFlip: each image is zero-padded by <see cref="Padding"/> pixels on every side and
/// cropped back to its size at a random offset, then mirrored left-right with probability 1/2. The draws
/// come from a generator seeded by (seed, epoch), consumed image by image in batch order, so an epoch's
/// augmentation is the same whenever it is trained (a resumed run included) and whatever the thread count.
/// Nothing is allocated per batch once the scratch has grown to an image.
/// </summary>
public sealed class Augmentation(int padding, bool flip, ulong seed)
{
    private const ulong StreamBase = 0x6175_6700_0000_0000; // "aug"
    private Rng _rng = new(seed);
    private float[] _scratch = [];

    public int Padding { get; } = padding >= 0 ? padding : throw new ArgumentOutOfRangeException(nameof(padding), $"padding must be >= 0, got {padding}");
    public bool Flip { get; } = flip;
    public bool Active => Padding > 0 || Flip;

    /// <summary>Starts an epoch's draws.</summary>
    public void StartEpoch(int epoch) => _rng = Rng.ForStream(seed, StreamBase + (ulong)epoch);

    /// <summary>Augments the first <paramref name="n"/> images of <paramref name="images"/> [N, C, H, W].</summary>
    public void Apply(Tensor images, int n)
    {
        int channels = images.Dim(1), height = images.Dim(2), width = images.Dim(3), plane = height * width;
        if (_scratch.Length < channels * plane) _scratch = new float[channels * plane];
        var all = images.Span;
        for (int image = 0; image < n; image++)
        {
            var pixels = all.Slice(image * channels * plane, channels * plane);
            int dy = Padding > 0 ? _rng.NextInt(2 * Padding + 1) - Padding : 0;
            int dx = Padding > 0 ? _rng.NextInt(2 * Padding + 1) - Padding : 0;
            bool mirror = Flip && _rng.NextInt(2) == 1;
            if (dy == 0 && dx == 0 && !mirror) continue;
            pixels.CopyTo(_scratch);
            // Output (y, x) takes input (y + dy, x + dx) of the unpadded image (zero outside), x mirrored after the crop.
            for (int c = 0; c < channels; c++)
                for (int y = 0; y < height; y++)
                {
                    int sourceY = y + dy;
                    var row = pixels.Slice(c * plane + y * width, width);
                    if (sourceY < 0 || sourceY >= height) { row.Clear(); continue; }
                    var source = _scratch.AsSpan(c * plane + sourceY * width, width);
                    for (int x = 0; x < width; x++)
                    {
                        int sourceX = (mirror ? width - 1 - x : x) + dx;
                        row[x] = sourceX >= 0 && sourceX < width ? source[sourceX] : 0f;
                    }
                }
        }
    }
}
