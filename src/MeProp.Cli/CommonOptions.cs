using System.CommandLine;
using MeProp.Data;
using MeProp.Training;

namespace MeProp.Cli;

/// <summary>Options several commands share, and the one place that turns failures into exit codes.</summary>
internal static class CommonOptions
{
    public static readonly Option<bool> Verbose = new("--verbose")
    {
        Description = "Print stack traces with errors",
        Recursive = true,
    };

    public static Option<string?> DataDirectory() => new("--data")
    {
        Description = "Directory holding the four IDX files (train-images-idx3-ubyte, ...; plain or .gz). When it lacks them, MNIST is fetched into it. Default: $MEPROP_DATA or ~/.cache/meprop/mnist",
    };

    public static Option<string> Activation()
    {
        var option = new Option<string>("--activation") { Description = "Nonlinearity: relu, sigmoid or tanh", DefaultValueFactory = _ => "relu" };
        option.AcceptOnlyFromAmong("relu", "sigmoid", "tanh");
        return option;
    }

    public static MeProp.Layers.ActivationKind ParseActivation(string name) => Enum.Parse<MeProp.Layers.ActivationKind>(name, ignoreCase: true);

    public static Option<int> Threads() => new("--threads")
    {
        Description = "Worker threads (default: all cores)",
        DefaultValueFactory = _ => Environment.ProcessorCount,
        Validators = { r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--threads must be >= 1"); } },
    };

    /// <summary>
    /// Runs a command body: known failures (bad data, bad checkpoint, bad option values, I/O) become one
    /// line on stderr and exit code 1; the stack trace only with --verbose.
    /// </summary>
    public static int Run(ParseResult parse, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is DataFormatException or DataFetchException or CheckpointFormatException
                                       or ArgumentException or IOException or UnauthorizedAccessException or InvalidOperationException
                                       or InvalidDataException)
        {
            Console.Error.WriteLine("error: " + e.Message);
            if (parse.GetValue(Verbose)) Console.Error.WriteLine(e);
            return 1;
        }
    }

    /// <summary>
    /// The directory to load: <paramref name="dataDirectory"/> as it is when it already holds the four
    /// files (any data set), otherwise MNIST fetched and checksum-verified into it (or the default cache).
    /// </summary>
    public static string ResolveData(string? dataDirectory)
    {
        if (dataDirectory is not null && MnistFiles.Names.All(n => File.Exists(Path.Combine(dataDirectory, n)) || File.Exists(Path.Combine(dataDirectory, n + ".gz"))))
            return dataDirectory;
        var fetcher = MnistFetcher.CreateDefault(dataDirectory, message => Console.Error.WriteLine(message));
        return fetcher.EnsureAsync().GetAwaiter().GetResult();
    }
}
