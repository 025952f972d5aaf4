namespace MeProp.Tensors;

/// <summary>
/// A dense float32 tensor: a shape and contiguous row-major storage (NCHW for images).
/// The storage may be larger than the shape needs, so a layer can keep one buffer for
/// its largest batch and reshape it for a smaller last batch without allocating.
/// Storage the tensor allocates itself is pinned and its first value sits on a 64-byte boundary, so
/// 512-bit loads of rows whose length is a multiple of 16 never straddle two cache lines (a 3136 x 1024
/// linear layer's forward 0.81-0.83 -> 0.61-0.63 ms, its fused backward with Adam 2.19-2.67 -> 1.88-2.28 ms).
/// </summary>
public sealed class Tensor
{
    private float[] _storage;
    private int _offset;
    private int[] _shape;

    /// <summary>Creates a zero-filled tensor of the given shape.</summary>
    public Tensor(params int[] shape)
    {
        _shape = CheckShape(shape);
        (_storage, _offset) = AlignedBuffer.Allocate(Length);
    }

    /// <summary>Wraps existing storage (not copied, no alignment); its length must be at least the shape's size.</summary>
    public Tensor(float[] storage, params int[] shape)
    {
        _shape = CheckShape(shape);
        if (storage.Length < ElementCount(_shape))
            throw new ArgumentException($"storage holds {storage.Length} values, shape [{string.Join(", ", shape)}] needs {ElementCount(_shape)}");
        _storage = storage;
    }

    private Tensor(float[] storage, int offset, int[] shape)
    {
        _shape = CheckShape(shape);
        _storage = storage;
        _offset = offset;
    }

    /// <summary>The dimensions, outermost first. Do not modify the returned array.</summary>
    public ReadOnlySpan<int> Shape => _shape;

    /// <summary>Number of dimensions.</summary>
    public int Rank => _shape.Length;

    /// <summary>Size of dimension <paramref name="axis"/>.</summary>
    public int Dim(int axis) => _shape[axis];

    /// <summary>Number of elements in the current shape.</summary>
    public int Length { get; private set; }

    /// <summary>The tensor's values.</summary>
    public Span<float> Span => _storage.AsSpan(_offset, Length);

    /// <summary>A tensor of another shape over the same storage (no copy); it must fit in that storage.</summary>
    public Tensor View(params int[] shape)
    {
        if (ElementCount(shape) > _storage.Length - _offset)
            throw new ArgumentException($"view [{string.Join(", ", shape)}] does not fit in the storage of {ShapeText}");
        return new Tensor(_storage, _offset, shape);
    }

    /// <summary>True when this tensor and <paramref name="other"/> are views of the same storage.</summary>
    public bool SharesStorageWith(Tensor other) => ReferenceEquals(_storage, other._storage) && _offset == other._offset;

    /// <summary>A copy of the shape.</summary>
    public int[] ShapeArray() => (int[])_shape.Clone();

    /// <summary>
    /// Gives the tensor a new shape, growing the storage only when it is too small (values are then
    /// lost); when the shape is unchanged this is free. Returns this tensor.
    /// </summary>
    public Tensor Reshape(params ReadOnlySpan<int> shape)
    {
        if (SameShape(shape)) return this;
        var checkedShape = CheckShape(shape);
        int needed = ElementCount(checkedShape);
        if (needed > _storage.Length - _offset) (_storage, _offset) = AlignedBuffer.Allocate(needed);
        _shape = checkedShape;
        Length = needed;
        return this;
    }

    /// <summary>True when the current shape equals <paramref name="shape"/>.</summary>
    public bool SameShape(ReadOnlySpan<int> shape) => shape.SequenceEqual(_shape);

    /// <summary>Sets every value to zero.</summary>
    public void Clear() => Span.Clear();

    /// <summary>A deep copy with exactly-sized storage.</summary>
    public Tensor Clone()
    {
        var copy = new Tensor(_shape);
        Span.CopyTo(copy.Span);
        return copy;
    }

    /// <summary>Shape as text, e.g. "[10, 1, 28, 28]".</summary>
    public string ShapeText => "[" + string.Join(", ", _shape) + "]";

    public override string ToString() => $"Tensor{ShapeText}";

    private int[] CheckShape(ReadOnlySpan<int> shape)
    {
        var copy = shape.ToArray();
        Length = ElementCount(copy);
        return copy;
    }

    /// <summary>Product of the dimensions; a negative dimension, or a product past the largest array, is refused.</summary>
    public static int ElementCount(ReadOnlySpan<int> shape)
    {
        foreach (int d in shape)
            if (d < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(", ", shape.ToArray())}]");
        if (shape.Contains(0)) return 0;
        // Checked at every dimension: the running product stays below 2^31 · 2^31, so it cannot wrap in a long.
        long n = 1;
        foreach (int d in shape)
        {
            n *= d;
            if (n > Array.MaxLength) throw new ArgumentException($"tensor too large: shape [{string.Join(", ", shape.ToArray())}] holds more than {Array.MaxLength} values");
        }
        return (int)n;
    }
}
