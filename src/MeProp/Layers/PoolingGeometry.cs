namespace MeProp.Layers;

/// <summary>The output shape of a window pooling without padding (floor mode), shared by max- and average-pooling.</summary>
internal static class PoolingGeometry
{
    /// <summary>x [N, C, H, W] -> [N, C, (H - K) / S + 1, (W - K) / S + 1]; an error naming the layer when the input is not 4-D or smaller than the window.</summary>
    public static int[] OutputShape(string name, int kernelSize, int stride, ReadOnlySpan<int> s)
    {
        if (s.Length != 4 || s[2] < kernelSize || s[3] < kernelSize)
            throw new ArgumentException($"{name}: expected input [N, C, H, W] with H, W >= {kernelSize}, got [{string.Join(", ", s.ToArray())}]");
        return [s[0], s[1], (s[2] - kernelSize) / stride + 1, (s[3] - kernelSize) / stride + 1];
    }
}
