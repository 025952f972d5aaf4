namespace MeProp.Tensors;

/// <summary>
/// A dense float32 tensor: a shape and contiguous row-major storage (NCHW for images).
/// The storage may be larger than the shape needs, so a layer can keep one buffer for
/// its largest batch and reshape it for a smaller last batch without allocating.
/// </summary>
public sealed class Tensor
{
    private float[] _storage;
    private int[] _shape;

    /// <summary>Creates a zero-filled tensor of the given shape.</summary>
    public Tensor(params int[] shape)
    {
        _shape = CheckShape(shape);
        _storage = new float[ElementCount(_shape)];
    }

    /// <summary>Wraps existing storage (not copied); its length must be at least the shape's size.</summary>
    public Tensor(float[] storage, params int[] shape)
    {
        _shape = CheckShape(shape);
        if (storage.Length < ElementCount(_shape))
            throw new ArgumentException($"storage holds {storage.Length} values, shape [{string.Join(", ", shape)}] needs {ElementCount(_shape)}");
        _storage = storage;
    }

    /// <summary>The dimensions, outermost first. Do not modify the returned array.</summary>
    public ReadOnlySpan<int> Shape => _shape;

    /// <summary>Number of dimensions.</summary>
    public int Rank => _shape.Length;

    /// <summary>Size of dimension <paramref name="axis"/>.</summary>
    public int Dim(int axis) => _shape[axis];

    /// <summary>Number of elements in the current shape.</summary>
    public int Length { get; private set; }

    /// <summary>The underlying array; only the first <see cref="Length"/> values belong to the tensor.</summary>
    public float[] Storage => _storage;

    /// <summary>The tensor's values.</summary>
    public Span<float> Span => _storage.AsSpan(0, Length);

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
        if (needed > _storage.Length) _storage = new float[needed];
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
        foreach (int d in shape)
            if (d < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(", ", shape.ToArray())}]");
        var copy = shape.ToArray();
        Length = ElementCount(copy);
        return copy;
    }

    /// <summary>Product of the dimensions.</summary>
    public static int ElementCount(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (int d in shape) n *= d;
        if (n > Array.MaxLength) throw new ArgumentException("tensor too large");
        return (int)n;
    }
}
