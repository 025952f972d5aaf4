namespace MeProp.Tensors;

/// <summary>
/// Scratch floats whose first element sits on a 64-byte boundary, so 512-bit loads of rows that are a
/// multiple of 16 floats long never straddle two cache lines (a 30% difference for the sparse
/// convolution kernels, which gather such rows at random). Backed by a pinned array, grown on demand
/// and reused; growing loses the contents.
/// </summary>
public sealed unsafe class AlignedBuffer
{
    private const int Alignment = 64;
    private float[] _storage = [];
    private int _offset;

    /// <summary>The first <paramref name="length"/> floats, growing the storage (zeroed) when it is too small.</summary>
    public Span<float> Span(int length)
    {
        if (_storage.Length - _offset < length) (_storage, _offset) = Allocate(length);
        return _storage.AsSpan(_offset, length);
    }

    /// <summary>Zeroed pinned storage for <paramref name="length"/> floats and the index of the first one on a 64-byte boundary.</summary>
    internal static (float[] Storage, int Offset) Allocate(int length)
    {
        var storage = GC.AllocateArray<float>(length + Alignment / sizeof(float) - 1, pinned: true);
        fixed (float* start = storage)
            return (storage, (int)((Alignment - (nint)start % Alignment) % Alignment) / sizeof(float));
    }
}
