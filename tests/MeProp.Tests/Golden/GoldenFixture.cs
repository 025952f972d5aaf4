using System.Text.Json;

namespace MeProp.Tests.Golden;

/// <summary>
/// One PyTorch golden fixture: a JSON file written by scripts/make_golden_fixtures.py into
/// Fixtures/golden/ (copied to the test output directory). Format:
/// <c>{"description": "...", "params": {"stride": 1, ...}, "tensors": {"x": {"shape": [..], "data": [..]}}}</c>,
/// data flat and row-major, stored as float64 (read here as float32 or float64).
/// </summary>
public sealed class GoldenFixture
{
    private readonly Dictionary<string, double> _params;
    private readonly Dictionary<string, (int[] Shape, double[] Data)> _tensors;

    private GoldenFixture(string fileName, string description,
        Dictionary<string, double> parameters, Dictionary<string, (int[], double[])> tensors)
    {
        FileName = fileName;
        Description = description;
        _params = parameters;
        _tensors = tensors;
    }

    /// <summary>The folder the fixtures are read from: Fixtures/golden under the test output directory.</summary>
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden");

    /// <summary>File names (not paths) of all fixtures, sorted.</summary>
    public static IReadOnlyList<string> AllFileNames() =>
        System.IO.Directory.GetFiles(Directory, "*.json").Select(Path.GetFileName).OfType<string>()
            .Order(StringComparer.Ordinal).ToArray();

    /// <summary>Loads <paramref name="fileName"/> (e.g. "conv2d_s1_p2.json") from <see cref="Directory"/>.</summary>
    public static GoldenFixture Load(string fileName)
    {
        string path = Path.Combine(Directory, fileName);
        if (!File.Exists(path))
            throw new FileNotFoundException($"golden fixture {path} not found (run scripts/make_golden_fixtures.py)", path);
        return Parse(File.ReadAllText(path), fileName);
    }

    /// <summary>Parses fixture JSON text; <paramref name="fileName"/> is used in error messages only.</summary>
    public static GoldenFixture Parse(string json, string fileName)
    {
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        string description = root.TryGetProperty("description", out var d) ? d.GetString() ?? "" : "";

        var parameters = new Dictionary<string, double>(StringComparer.Ordinal);
        if (root.TryGetProperty("params", out var ps))
            foreach (var p in ps.EnumerateObject())
                parameters[p.Name] = p.Value.GetDouble();

        var tensors = new Dictionary<string, (int[], double[])>(StringComparer.Ordinal);
        if (!root.TryGetProperty("tensors", out var ts))
            throw new InvalidDataException($"{fileName}: no \"tensors\" object");
        foreach (var t in ts.EnumerateObject())
        {
            if (!t.Value.TryGetProperty("shape", out var shape) || !t.Value.TryGetProperty("data", out var data))
                throw new InvalidDataException($"{fileName}: tensor \"{t.Name}\" lacks \"shape\" or \"data\"");
            tensors[t.Name] = (
                shape.EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                data.EnumerateArray().Select(e => e.GetDouble()).ToArray());
        }
        return new GoldenFixture(fileName, description, parameters, tensors);
    }

    /// <summary>The fixture's file name, e.g. "linear.json".</summary>
    public string FileName { get; }

    /// <summary>What the fixture holds and how it was computed (includes the torch version).</summary>
    public string Description { get; }

    /// <summary>Names of the stored tensors, in file order.</summary>
    public IReadOnlyCollection<string> TensorNames => _tensors.Keys;

    /// <summary>Names of the scalar parameters.</summary>
    public IReadOnlyCollection<string> ParamNames => _params.Keys;

    /// <summary>Whether a tensor called <paramref name="name"/> is stored.</summary>
    public bool HasTensor(string name) => _tensors.ContainsKey(name);

    /// <summary>Tensor <paramref name="name"/>'s values, flat row-major, rounded to float32 (a fresh copy).</summary>
    public float[] Data(string name) => Array.ConvertAll(Get(name).Data, v => (float)v);

    /// <summary>Tensor <paramref name="name"/>'s values at the stored float64 precision (a fresh copy).</summary>
    public double[] DataDouble(string name) => (double[])Get(name).Data.Clone();

    /// <summary>Tensor <paramref name="name"/>'s shape, outermost dimension first (a fresh copy).</summary>
    public int[] Shape(string name) => (int[])Get(name).Shape.Clone();

    /// <summary>Scalar parameter <paramref name="name"/> (e.g. "stride", "eps").</summary>
    public double Param(string name) =>
        _params.TryGetValue(name, out double v)
            ? v
            : throw new KeyNotFoundException($"{FileName}: no param \"{name}\" (has: {string.Join(", ", _params.Keys)})");

    private (int[] Shape, double[] Data) Get(string name) =>
        _tensors.TryGetValue(name, out var t)
            ? t
            : throw new KeyNotFoundException($"{FileName}: no tensor \"{name}\" (has: {string.Join(", ", _tensors.Keys)})");
}
