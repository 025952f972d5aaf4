using MeProp.Cli;
using MeProp.Tests.Data;
using MeProp.Training;

namespace MeProp.Tests.Cli;

/// <summary>
/// Runs the meprop command line in-process with captured output, on tiny IDX data. Console output is
/// process-wide state: every test class that uses <see cref="Run"/> belongs to the "Console" collection,
/// which runs alone.
/// </summary>
internal static class CliHarness
{
    public static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        Console.SetOut(stdout);
        Console.SetError(stderr);
        try
        {
            return (CommandLine.Run(args), stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    /// <summary>An MNIST-layout directory of 61 training and 23 test images of 8x8.</summary>
    public static TempDirectory TinyData()
    {
        var dir = new TempDirectory();
        IdxTestFiles.WriteMnistLayout(dir.Path, trainCount: 61, testCount: 23, height: 8, width: 8);
        return dir;
    }

    /// <summary>metrics.jsonl lines without the wall-clock fields.</summary>
    public static List<string> MetricsWithoutTimes(string directory) =>
        File.ReadAllLines(Path.Combine(directory, Trainer.MetricsFile)).Select(line =>
        {
            var node = System.Text.Json.Nodes.JsonNode.Parse(line)!.AsObject();
            foreach (string key in node.Select(p => p.Key).Where(k => k.Contains("seconds")).ToList()) node.Remove(key);
            return node.ToJsonString();
        }).ToList();

    /// <summary>
    /// Asserts two run directories hold the same run: metrics lines without the wall-clock fields, and every
    /// float tensor of last.safetensors to the bit (<paramref name="what"/> names the comparison in failures).
    /// </summary>
    public static void AssertSameRun(string expected, string actual, string what = "")
    {
        Assert.Equal(MetricsWithoutTimes(expected), MetricsWithoutTimes(actual));
        AssertSameCheckpointTensors(expected, actual, what);
    }

    /// <summary>Asserts the two run directories' last checkpoints hold the same float32 tensors, bit for bit.</summary>
    public static void AssertSameCheckpointTensors(string expected, string actual, string what = "")
    {
        var a = SafeTensorsFile.Load(Path.Combine(expected, Trainer.LastCheckpoint));
        var b = SafeTensorsFile.Load(Path.Combine(actual, Trainer.LastCheckpoint));
        Assert.Equal(a.Names, b.Names);
        foreach (string name in a.Names.Where(n => a.GetDType(n) == SafeTensorsDType.F32))
            Assert.True(a.GetFloat32(name).Span.SequenceEqual(b.GetFloat32(name).Span), $"{name} differs {what}");
    }

    /// <summary>Asserts a failure reported as one "error: " line (a parse error may add the pointer to --help).</summary>
    public static string AssertOneLineError((int Code, string Stdout, string Stderr) result, int code)
    {
        Assert.True(result.Code == code, $"exit {result.Code}, expected {code}; stderr: {result.Stderr}");
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith("(see ")).ToList();
        Assert.True(lines.Count == 1, "expected one line, got: " + result.Stderr);
        Assert.StartsWith("error: ", lines[0]);
        Assert.DoesNotContain("   at ", result.Stderr);
        Assert.DoesNotContain("(Parameter '", result.Stderr);
        return lines[0];
    }
}
