using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using MeProp.Tensors;

namespace MeProp.Training;

/// <summary>Element types this reader and writer support, named as in the safetensors header.</summary>
public enum SafeTensorsDType
{
    /// <summary>32-bit float.</summary>
    F32,

    /// <summary>64-bit signed integer (e.g. PyTorch's BatchNorm num_batches_tracked).</summary>
    I64,
}

/// <summary>
/// Named tensors plus string metadata, read from and written to the safetensors format:
/// an 8-byte little-endian header length N, N bytes of JSON
/// (<c>{"__metadata__": {..}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..}</c>,
/// padded with spaces so the data starts at a multiple of 8), then the raw little-endian tensor data, with
/// offsets relative to the end of the header. Tensors keep the order they were added in (or the header
/// order when loaded). Saving is atomic: a temporary file in the same directory is renamed over the target.
/// </summary>
public sealed class SafeTensorsFile
{
    private const string MetadataKey = "__metadata__";

    private sealed record Entry(string Name, SafeTensorsDType DType, int[] Shape, Tensor? Float32, long[]? Int64);

    private readonly List<Entry> _entries = [];
    private readonly Dictionary<string, int> _indexByName = [];

    /// <summary>An empty set of tensors, to fill and <see cref="Save"/>.</summary>
    public SafeTensorsFile() { }

    private SafeTensorsFile(string sourcePath) => SourcePath = sourcePath;

    /// <summary>The file this was loaded from, or null; error messages name it.</summary>
    public string? SourcePath { get; }

    /// <summary>Free-form string metadata, written under "__metadata__" when not empty.</summary>
    public Dictionary<string, string> Metadata { get; } = [];

    /// <summary>Tensor names in order.</summary>
    public IEnumerable<string> Names => _entries.Select(entry => entry.Name);

    /// <summary>Number of tensors.</summary>
    public int Count => _entries.Count;

    /// <summary>True when a tensor of this name exists.</summary>
    public bool Contains(string name) => _indexByName.ContainsKey(name);

    /// <summary>Adds a float tensor. It is held, not copied: <see cref="Save"/> writes its values as they are then.</summary>
    public void Add(string name, Tensor tensor) =>
        AddEntry(new Entry(name, SafeTensorsDType.F32, tensor.ShapeArray(), tensor, null));

    /// <summary>Adds an int64 tensor of the given shape (held, not copied).</summary>
    public void AddInt64(string name, long[] values, params int[] shape)
    {
        if (Tensor.ElementCount(shape) != values.Length)
            throw new ArgumentException($"tensor '{name}': shape [{string.Join(", ", shape)}] needs {Tensor.ElementCount(shape)} values, got {values.Length}");
        AddEntry(new Entry(name, SafeTensorsDType.I64, (int[])shape.Clone(), null, values));
    }

    private void AddEntry(Entry entry)
    {
        if (entry.Name == MetadataKey) throw new ArgumentException($"'{MetadataKey}' is reserved for metadata");
        if (!_indexByName.TryAdd(entry.Name, _entries.Count))
            throw new ArgumentException($"a tensor named '{entry.Name}' was already added");
        _entries.Add(entry);
    }

    /// <summary>The element type of tensor <paramref name="name"/>.</summary>
    public SafeTensorsDType GetDType(string name) => Find(name).DType;

    /// <summary>A copy of the shape of tensor <paramref name="name"/>.</summary>
    public int[] GetShape(string name) => (int[])Find(name).Shape.Clone();

    /// <summary>The F32 tensor <paramref name="name"/>; throws <see cref="CheckpointFormatException"/> when missing or not F32.</summary>
    public Tensor GetFloat32(string name) => Find(name, SafeTensorsDType.F32).Float32!;

    /// <summary>The I64 values of tensor <paramref name="name"/>, row-major; throws when missing or not I64.</summary>
    public long[] GetInt64(string name) => Find(name, SafeTensorsDType.I64).Int64!;

    private Entry Find(string name, SafeTensorsDType? dtype = null)
    {
        if (!_indexByName.TryGetValue(name, out int index))
            throw new CheckpointFormatException($"{SourcePath ?? "safetensors"}: no tensor named '{name}'");
        Entry entry = _entries[index];
        if (dtype is { } expected && entry.DType != expected)
            throw new CheckpointFormatException($"{SourcePath ?? "safetensors"}: tensor '{name}' is {entry.DType}, expected {expected}");
        return entry;
    }

    /// <summary>Writes the file atomically: a temporary file in the same directory, then a rename over <paramref name="path"/>.</summary>
    public void Save(string path)
    {
        RequireLittleEndian();
        byte[] header = BuildHeader();
        string fullPath = Path.GetFullPath(path);
        string temporary = AtomicFile.TemporaryPath(fullPath, Guid.NewGuid().ToString("N"));
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
                stream.Write(length);
                stream.Write(header);
                foreach (Entry entry in _entries)
                {
                    if (entry.DType == SafeTensorsDType.F32) stream.Write(MemoryMarshal.AsBytes(entry.Float32!.Span));
                    else stream.Write(MemoryMarshal.AsBytes(entry.Int64.AsSpan()));
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, fullPath, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    // The JSON header, metadata first, tensors in order with consecutive offsets, padded with spaces to a
    // multiple of 8 bytes so the data that follows the 8-byte length is 8-byte aligned.
    private byte[] BuildHeader()
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (Metadata.Count > 0)
            {
                json.WriteStartObject(MetadataKey);
                foreach ((string key, string value) in Metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (Entry entry in _entries)
            {
                long byteCount = (long)Tensor.ElementCount(entry.Shape) * ElementSize(entry.DType);
                json.WriteStartObject(entry.Name);
                json.WriteString("dtype", entry.DType.ToString());
                json.WriteStartArray("shape");
                foreach (int dimension in entry.Shape) json.WriteNumberValue(dimension);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + byteCount);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += byteCount;
            }
            json.WriteEndObject();
        }
        int paddedLength = (buffer.WrittenCount + 7) / 8 * 8;
        byte[] header = new byte[paddedLength];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }

    /// <summary>
    /// Reads and validates a safetensors file: header length, JSON, dtypes, shapes, and that the data offsets
    /// tile the data section exactly (no gap, overlap or trailing bytes). Any problem is a one-line
    /// <see cref="CheckpointFormatException"/> naming the file.
    /// </summary>
    public static SafeTensorsFile Load(string path)
    {
        RequireLittleEndian();
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            long fileLength = stream.Length;
            if (fileLength < 8)
                throw Error(path, $"{fileLength} bytes, too short for the 8-byte header length");
            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (headerLength > (ulong)(fileLength - 8))
                throw Error(path, $"header length {headerLength} is more than the {fileLength - 8} bytes after it");
            if (headerLength > (ulong)Array.MaxLength)
                throw Error(path, $"header length {headerLength} is more than one array holds");
            var header = new byte[headerLength];
            stream.ReadExactly(header);
            long dataLength = fileLength - 8 - (long)headerLength;

            var file = new SafeTensorsFile(path);
            var ranges = new List<(long Begin, long End, string Name)>();
            ParseHeader(path, header, dataLength, file, ranges);
            CheckRangesTileData(path, ranges, dataLength);

            long dataStart = 8 + (long)headerLength;
            foreach (Entry entry in file._entries)
            {
                (long begin, _, _) = ranges[file._indexByName[entry.Name]];
                stream.Position = dataStart + begin;
                if (entry.DType == SafeTensorsDType.F32) stream.ReadExactly(MemoryMarshal.AsBytes(entry.Float32!.Span));
                else stream.ReadExactly(MemoryMarshal.AsBytes(entry.Int64.AsSpan()));
            }
            return file;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw Error(path, "file not found", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Error(path, $"cannot read: {e.Message}", e);
        }
    }

    private static void ParseHeader(string path, byte[] header, long dataLength, SafeTensorsFile file,
        List<(long Begin, long End, string Name)> ranges)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw Error(path, $"header is not valid JSON: {OneLine(e.Message)}", e);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Error(path, $"header is a JSON {document.RootElement.ValueKind}, expected an object");
            var seen = new HashSet<string>();
            foreach (JsonProperty property in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                    throw Error(path, $"'{property.Name}' appears twice in the header");
                if (property.Name == MetadataKey)
                    ParseMetadata(path, property.Value, file.Metadata);
                else
                    file.AddEntry(ParseEntry(path, property, dataLength, ranges));
            }
        }
    }

    private static void ParseMetadata(string path, JsonElement metadata, Dictionary<string, string> into)
    {
        if (metadata.ValueKind != JsonValueKind.Object)
            throw Error(path, $"{MetadataKey} is a JSON {metadata.ValueKind}, expected an object of strings");
        foreach (JsonProperty item in metadata.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw Error(path, $"{MetadataKey}.{item.Name} is a JSON {item.Value.ValueKind}, expected a string");
            into[item.Name] = item.Value.GetString()!;
        }
    }

    private static Entry ParseEntry(string path, JsonProperty property, long dataLength,
        List<(long Begin, long End, string Name)> ranges)
    {
        string name = property.Name;
        JsonElement value = property.Value;
        if (value.ValueKind != JsonValueKind.Object)
            throw Error(path, $"tensor '{name}' is a JSON {value.ValueKind}, expected an object");

        if (!value.TryGetProperty("dtype", out JsonElement dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Error(path, $"tensor '{name}' has no string \"dtype\"");
        string dtypeText = dtypeElement.GetString()!;
        SafeTensorsDType dtype = dtypeText switch
        {
            "F32" => SafeTensorsDType.F32,
            "I64" => SafeTensorsDType.I64,
            _ => throw Error(path, $"tensor '{name}' has dtype {dtypeText}; only F32 and I64 are supported (from PyTorch, save float tensors as float32: tensor.float())"),
        };

        if (!value.TryGetProperty("shape", out JsonElement shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Error(path, $"tensor '{name}' has no \"shape\" array");
        var shape = new int[shapeElement.GetArrayLength()];
        long elementCount = 1;
        for (int d = 0; d < shape.Length; d++)
        {
            JsonElement dimension = shapeElement[d];
            if (dimension.ValueKind != JsonValueKind.Number || !dimension.TryGetInt32(out shape[d]) || shape[d] < 0)
                throw Error(path, $"tensor '{name}' has shape {shapeElement.GetRawText()}: dimension {d} is not an int32 >= 0");
            elementCount *= shape[d];
            if (elementCount > Array.MaxLength)
                throw Error(path, $"tensor '{name}' has shape {shapeElement.GetRawText()}, too large for one array");
        }

        if (!value.TryGetProperty("data_offsets", out JsonElement offsets) || offsets.ValueKind != JsonValueKind.Array
            || offsets.GetArrayLength() != 2
            || offsets[0].ValueKind != JsonValueKind.Number || offsets[1].ValueKind != JsonValueKind.Number
            || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end))
            throw Error(path, $"tensor '{name}' has no \"data_offsets\" array of two integers");
        if (begin < 0 || end < begin || end > dataLength)
            throw Error(path, $"tensor '{name}' has data_offsets [{begin}, {end}] outside the {dataLength}-byte data section");
        long expectedBytes = elementCount * ElementSize(dtype);
        if (end - begin != expectedBytes)
            throw Error(path, $"tensor '{name}' is {dtypeText} of shape {shapeElement.GetRawText()} = {expectedBytes} bytes, but data_offsets [{begin}, {end}] hold {end - begin}");

        ranges.Add((begin, end, name));
        return dtype == SafeTensorsDType.F32
            ? new Entry(name, dtype, shape, new Tensor(shape), null)
            : new Entry(name, dtype, shape, null, new long[elementCount]);
    }

    private static void CheckRangesTileData(string path, List<(long Begin, long End, string Name)> ranges, long dataLength)
    {
        var sorted = ranges.OrderBy(range => range.Begin).ThenBy(range => range.End).ToList();
        long expectedBegin = 0;
        foreach ((long begin, long end, string name) in sorted)
        {
            if (begin != expectedBegin)
                throw Error(path, begin > expectedBegin
                    ? $"data section has a gap: tensor '{name}' starts at {begin}, the previous one ends at {expectedBegin}"
                    : $"tensor '{name}' at [{begin}, {end}] overlaps the previous tensor, which ends at {expectedBegin}");
            expectedBegin = end;
        }
        if (expectedBegin != dataLength)
            throw Error(path, $"tensors cover {expectedBegin} bytes, but the data section after the header has {dataLength}");
    }

    private static int ElementSize(SafeTensorsDType dtype) => dtype == SafeTensorsDType.F32 ? sizeof(float) : sizeof(long);

    private static string OneLine(string text) => text.ReplaceLineEndings(" ");

    private static void RequireLittleEndian()
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; this machine is big-endian");
    }

    private static CheckpointFormatException Error(string path, string what, Exception? inner = null) =>
        inner is null ? new CheckpointFormatException($"{path}: {what}") : new CheckpointFormatException($"{path}: {what}", inner);
}
