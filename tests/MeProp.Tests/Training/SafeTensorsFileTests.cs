using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using MeProp.Tensors;
using MeProp.Training;

namespace MeProp.Tests.Training;

public sealed class SafeTensorsFileTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    private static Tensor Filled(float start, params int[] shape)
    {
        var tensor = new Tensor(shape);
        for (int i = 0; i < tensor.Length; i++) tensor.Span[i] = start + i * 0.5f;
        return tensor;
    }

    /// <summary>Writes a file by hand: 8-byte length, the header text as given, then the data bytes.</summary>
    private string WriteRaw(string header, byte[] data, ulong? headerLength = null)
    {
        byte[] headerBytes = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + headerBytes.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength ?? (ulong)headerBytes.Length);
        headerBytes.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + headerBytes.Length);
        string path = _directory.File("raw.safetensors");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] FloatBytes(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    [Fact]
    public void SaveLoad_RoundTripsTensorsMetadataAndOrder()
    {
        var file = new SafeTensorsFile();
        file.Metadata["format"] = "pt";
        file.Metadata["epoch"] = "3";
        file.Add("conv1.weight", Filled(1, 2, 1, 3, 3));
        file.Add("bn.num_batches_tracked_is_next", Filled(-4, 3));
        file.AddInt64("bn.num_batches_tracked", [long.MaxValue]);
        file.Add("a.scalar", Filled(7));
        file.Add("empty", new Tensor(0, 3));
        file.AddInt64("rng.state", [1, -2, 3, long.MinValue], 2, 2);
        string path = _directory.File("model.safetensors");

        file.Save(path);
        SafeTensorsFile loaded = SafeTensorsFile.Load(path);

        Assert.Equal(file.Names, loaded.Names);
        Assert.Equal(file.Metadata, loaded.Metadata);
        foreach (string name in new[] { "conv1.weight", "bn.num_batches_tracked_is_next", "a.scalar", "empty" })
        {
            Assert.Equal(file.GetFloat32(name).ShapeArray(), loaded.GetFloat32(name).ShapeArray());
            Assert.Equal(file.GetFloat32(name).Span.ToArray(), loaded.GetFloat32(name).Span.ToArray());
        }
        Assert.Equal(new[] { long.MaxValue }, loaded.GetInt64("bn.num_batches_tracked"));
        Assert.Equal(new[] { 2, 2 }, loaded.GetShape("rng.state"));
        Assert.Equal(SafeTensorsDType.I64, loaded.GetDType("rng.state"));
        Assert.Equal(new long[] { 1, -2, 3, long.MinValue }, loaded.GetInt64("rng.state"));
    }

    [Fact]
    public void Save_WritesTheSafetensorsLayout()
    {
        var file = new SafeTensorsFile();
        file.Add("w", Filled(1, 2, 2));
        file.AddInt64("n", [5]);
        string path = _directory.File("layout.safetensors");

        file.Save(path);

        byte[] bytes = File.ReadAllBytes(path);
        int headerLength = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
        Assert.Equal(0, headerLength % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, headerLength);
        Assert.Equal("""{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"n":{"dtype":"I64","shape":[],"data_offsets":[16,24]}}""",
            header.TrimEnd(' '));
        Assert.Equal(FloatBytes(1, 1.5f, 2, 2.5f), bytes[(8 + headerLength)..(8 + headerLength + 16)]);
        Assert.Equal(5L, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(8 + headerLength + 16)));
        Assert.Equal(8 + headerLength + 24, bytes.Length);
    }

    [Fact]
    public void Save_WritesOnlyTheTensorsCurrentShape()
    {
        var tensor = new Tensor(4, 3);
        tensor.Reshape(2, 3);
        tensor.Span.Fill(2);
        var file = new SafeTensorsFile();
        file.Add("t", tensor);
        string path = _directory.File("t.safetensors");

        file.Save(path);

        Assert.Equal(new float[] { 2, 2, 2, 2, 2, 2 }, SafeTensorsFile.Load(path).GetFloat32("t").Span.ToArray());
    }

    [Fact]
    public void Load_ReadsAHandWrittenFileLikePythonWrites()
    {
        // Python's safetensors sorts tensors by name and may order offsets differently from the header.
        string path = WriteRaw("""{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   """,
            FloatBytes(1, 2, 3));

        SafeTensorsFile file = SafeTensorsFile.Load(path);

        Assert.Equal(["a", "b"], file.Names);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(new float[] { 3 }, file.GetFloat32("a").Span.ToArray());
        Assert.Equal(new float[] { 1, 2 }, file.GetFloat32("b").Span.ToArray());
    }

    [Fact]
    public void Save_OverwritesAtomicallyAndLeavesNoTemporaryFile()
    {
        string path = _directory.File("ckpt.safetensors");
        File.WriteAllText(path, "old");
        var file = new SafeTensorsFile();
        file.Add("x", Filled(0, 3));

        file.Save(path);

        Assert.Equal(new[] { "ckpt.safetensors" }, Directory.GetFiles(_directory.Path).Select(Path.GetFileName));
        Assert.Equal(3, SafeTensorsFile.Load(path).GetFloat32("x").Length);
    }

    [Fact]
    public void Add_RejectsDuplicateAndReservedNames()
    {
        var file = new SafeTensorsFile();
        file.Add("x", new Tensor(1));

        Assert.Throws<ArgumentException>(() => file.Add("x", new Tensor(1)));
        Assert.Throws<ArgumentException>(() => file.Add("__metadata__", new Tensor(1)));
        Assert.Throws<ArgumentException>(() => file.AddInt64("y", [1, 2], 3));
    }

    [Fact]
    public void Get_MissingOrWrongType_NamesTheFile()
    {
        var file = new SafeTensorsFile();
        file.Add("x", new Tensor(1));
        file.AddInt64("n", [1]);
        string path = _directory.File("c.safetensors");
        file.Save(path);
        SafeTensorsFile loaded = SafeTensorsFile.Load(path);

        Assert.Equal($"{path}: no tensor named 'y'", Assert.Throws<CheckpointFormatException>(() => loaded.GetFloat32("y")).Message);
        Assert.Equal($"{path}: tensor 'n' is I64, expected F32", Assert.Throws<CheckpointFormatException>(() => loaded.GetFloat32("n")).Message);
        Assert.Equal($"{path}: tensor 'x' is F32, expected I64", Assert.Throws<CheckpointFormatException>(() => loaded.GetInt64("x")).Message);
    }

    public static TheoryData<string, string, int, ulong?> CorruptFiles => new()
    {
        // header, data length, header length override -> expected message fragment
        { """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", "header length 1000 is more than the 62 bytes after it", 8, 1000 },
        { """{"a":{"dtype":"F32",""", "header is not valid JSON: ", 0, null },
        { """[1, 2]""", "header is a JSON Array, expected an object", 0, null },
        { """{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}""", "tensor 'a' has dtype BF16; only F32 and I64 are supported", 4, null },
        { """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", "tensor 'a' has data_offsets [0, 8] outside the 4-byte data section", 4, null },
        { """{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", "tensor 'a' is F32 of shape [3] = 12 bytes, but data_offsets [0, 8] hold 8", 8, null },
        { """{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}""", "tensor 'a' has shape [-1]: dimension 0 is not an int32 >= 0", 0, null },
        { """{"a":{"dtype":"F32","shape":[1]}}""", "tensor 'a' has no \"data_offsets\" array of two integers", 4, null },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}}""", "tensor 'a' has no \"data_offsets\" array of two integers", 4, null },
        { """{"a":{"shape":[1],"data_offsets":[0,4]}}""", "tensor 'a' has no string \"dtype\"", 4, null },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", "data section has a gap: tensor 'a' starts at 4, the previous one ends at 0", 8, null },
        { """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", "tensor 'b' at [4, 8] overlaps the previous tensor, which ends at 8", 8, null },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", "tensors cover 4 bytes, but the data section after the header has 8", 8, null },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", "'a' appears twice in the header", 8, null },
        { """{"__metadata__":{"epoch":3}}""", "__metadata__.epoch is a JSON Number, expected a string", 0, null },
    };

    [Theory]
    [MemberData(nameof(CorruptFiles))]
    public void Load_CorruptFile_GivesOneLineErrorNamingTheFile(string header, string expected, int dataLength, ulong? headerLength)
    {
        string path = WriteRaw(header, new byte[dataLength], headerLength);

        var error = Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Load(path));

        Assert.StartsWith(path + ": ", error.Message);
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void Load_TooShortOrMissing_IsAnError()
    {
        string shortPath = _directory.File("short.safetensors");
        File.WriteAllBytes(shortPath, [1, 2, 3]);
        string missingPath = _directory.File("missing.safetensors");

        Assert.Equal($"{shortPath}: 3 bytes, too short for the 8-byte header length",
            Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Load(shortPath)).Message);
        Assert.Equal($"{missingPath}: file not found",
            Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Load(missingPath)).Message);
    }

    [Fact]
    public void Save_HeaderIsValidJsonWithMetadataFirst()
    {
        var file = new SafeTensorsFile();
        file.Add("z", new Tensor(1));
        file.Metadata["note"] = "quote \" and newline \n";
        string path = _directory.File("m.safetensors");

        file.Save(path);

        byte[] bytes = File.ReadAllBytes(path);
        using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes)));
        Assert.Equal(["__metadata__", "z"], header.RootElement.EnumerateObject().Select(p => p.Name));
        Assert.Equal("quote \" and newline \n", SafeTensorsFile.Load(path).Metadata["note"]);
    }
}
