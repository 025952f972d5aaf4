using MeProp.Data;
using MeProp.Tensors;

namespace MeProp.Tests.Data;

public class AugmentationTests
{
    /// <summary>Pad with zeros, crop at (padding + dy, padding + dx), mirror: written the obvious way, with the same draws.</summary>
    private static float[] Reference(float[] batch, int n, int c, int h, int w, int padding, bool flip, Rng rng)
    {
        var output = (float[])batch.Clone();
        for (int image = 0; image < n; image++)
        {
            int dy = padding > 0 ? rng.NextInt(2 * padding + 1) - padding : 0;
            int dx = padding > 0 ? rng.NextInt(2 * padding + 1) - padding : 0;
            bool mirror = flip && rng.NextInt(2) == 1;
            int ph = h + 2 * padding, pw = w + 2 * padding;
            for (int ch = 0; ch < c; ch++)
            {
                var padded = new float[ph, pw];
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++) padded[y + padding, x + padding] = batch[((image * c + ch) * h + y) * w + x];
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                    {
                        int cropped = mirror ? w - 1 - x : x;
                        output[((image * c + ch) * h + y) * w + x] = padded[y + padding + dy, cropped + padding + dx];
                    }
            }
        }
        return output;
    }

    [Theory]
    [InlineData(4, 1, 7, 5, 2, true)]
    [InlineData(6, 3, 4, 4, 4, false)]
    [InlineData(5, 2, 3, 6, 0, true)]
    public void CropAndFlipMatchTheReference(int n, int c, int h, int w, int padding, bool flip)
    {
        var images = new Tensor(n + 1, c, h, w);
        for (int i = 0; i < images.Length; i++) images.Span[i] = i + 1;
        var before = images.Span.ToArray();
        var augmentation = new Augmentation(padding, flip, seed: 9);
        augmentation.StartEpoch(3);
        augmentation.Apply(images, n);

        var expected = Reference(before, n, c, h, w, padding, flip, Rng.ForStream(9, 0x6175_6700_0000_0000 + 3));
        Assert.Equal(expected[..(n * c * h * w)], images.Span[..(n * c * h * w)].ToArray());
        Assert.Equal(before[(n * c * h * w)..], images.Span[(n * c * h * w)..].ToArray()); // past n: untouched
    }

    [Fact]
    public void AnEpochsDrawsRepeatAndEpochsDiffer()
    {
        float[] Run(int epoch)
        {
            var images = new Tensor(8, 1, 6, 6);
            for (int i = 0; i < images.Length; i++) images.Span[i] = i % 13;
            var augmentation = new Augmentation(2, true, seed: 1);
            augmentation.StartEpoch(epoch);
            augmentation.Apply(images, 8);
            return images.Span.ToArray();
        }
        Assert.Equal(Run(2), Run(2));
        Assert.NotEqual(Run(2), Run(3));
        Assert.False(new Augmentation(0, false, 1).Active);
    }
}
