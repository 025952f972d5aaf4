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
        Description = "Data directory: IDX files (train-images-idx3-ubyte, ...; plain or .gz), CIFAR-10/100 binary (or its .tar.gz), or an image folder (train/<class>/*.png, test/<class>/*.png). Absent or empty: MNIST is fetched into it. Default: a run's own (recorded when it was trained) for --resume and eval, else $MEPROP_DATA or ~/.cache/meprop/mnist",
    };

    public static Option<string> Model() => new Option<string>("--model")
    {
        Description = $"Network: {string.Join(" or ", MeProp.Models.ModelOptions.KnownModels)}, or a network file (.json: input, classes, layers; see docs/GUIDE.md)",
        DefaultValueFactory = _ => "paper-cnn",
    }.Require(v => MeProp.Models.ModelOptions.KnownModels.Contains(v) || v.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || File.Exists(v),
        $"--model must be {string.Join(" or ", MeProp.Models.ModelOptions.KnownModels)}, or a .json network file");

    /// <summary>A built-in network by name, or the network a .json file describes (read now, so a bad file fails before any work).</summary>
    public static MeProp.Models.ModelOptions ModelOptions(string model)
    {
        if (MeProp.Models.ModelOptions.KnownModels.Contains(model)) return new() { Model = model };
        return new() { Model = Path.GetFileName(model), Network = MeProp.Models.NetworkSpec.Load(model) };
    }

    public static Option<string> Activation()
    {
        var option = new Option<string>("--activation") { Description = "Nonlinearity: relu, sigmoid or tanh", DefaultValueFactory = _ => "relu" };
        option.AcceptOnlyFromAmong("relu", "sigmoid", "tanh");
        return option;
    }

    public static MeProp.Layers.ActivationKind ParseActivation(string name) => Enum.Parse<MeProp.Layers.ActivationKind>(name, ignoreCase: true);

    /// <summary>--exact-sparsity: auto (default), off or always (<see cref="MeProp.Layers.ExactSparsity"/>).</summary>
    public static Option<string> ExactSparsityOption() => new Option<string>("--exact-sparsity")
    {
        Description = "Dense backward of conv and linear layers on the non-zero entries of dL/dy only (same gradients within float rounding): auto (when the measured density is low), off, always",
        DefaultValueFactory = _ => "auto",
    }.AcceptOnlyFromAmong("auto", "off", "always");

    public static MeProp.Layers.ExactSparsity ParseExactSparsity(string text) => Enum.Parse<MeProp.Layers.ExactSparsity>(text, ignoreCase: true);

    public static Option<int> Threads() => new Option<int>("--threads")
    {
        Description = $"Worker threads, 1 to the {Environment.ProcessorCount} cores here (default: all cores)",
        DefaultValueFactory = _ => Environment.ProcessorCount,
    }.Require(v => v >= 1 && v <= Environment.ProcessorCount, $"--threads must be between 1 and the {Environment.ProcessorCount} cores of this machine");

    /// <summary>
    /// Adds a check of an option's value. A value that does not parse as <typeparamref name="T"/> is a parse
    /// error of its own, so the check skips it (reading it would throw instead of reporting one line).
    /// </summary>
    public static Option<T> Require<T>(this Option<T> option, Func<T, bool> valid, string message)
    {
        option.Validators.Add(result =>
        {
            T value;
            try { value = result.GetValueOrDefault<T>(); }
            catch (InvalidOperationException) { return; }
            if (!valid(value)) result.AddError(message);
        });
        return option;
    }

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
            // An ArgumentException's message ends in " (Parameter 'name')", a C# name that means nothing here.
            string message = e is ArgumentException { ParamName: string name } ? e.Message.Replace($" (Parameter '{name}')", "") : e.Message;
            Console.Error.WriteLine("error: " + message);
            if (parse.GetValue(Verbose)) Console.Error.WriteLine(e);
            return 1;
        }
    }

    /// <summary>
    /// Loads <paramref name="dataDirectory"/> in whatever format it holds (IDX, CIFAR binary, image folder).
    /// Without a directory, or with one that is absent or empty, MNIST is fetched and checksum-verified into it
    /// (or into the default cache); a directory holding something else is an error listing what was looked for.
    /// </summary>
    public static ImageData LoadData(string? dataDirectory) => MeProp.Data.DataDirectory.Load(ResolveDataDirectory(dataDirectory));

    /// <summary>The directory <see cref="LoadData"/> reads: the one given, after fetching MNIST into it where it has to.</summary>
    public static string ResolveDataDirectory(string? dataDirectory)
    {
        bool fetch = dataDirectory is null || !Directory.Exists(dataDirectory) || !Directory.EnumerateFileSystemEntries(dataDirectory).Any()
                     || (MeProp.Data.DataDirectory.Detect(dataDirectory) is null && MnistFiles.Names.Any(n => File.Exists(Path.Combine(dataDirectory, n))));
        if (!fetch) return dataDirectory!;
        var fetcher = KnownDataSet.Mnist.CreateFetcher(dataDirectory, message => Console.Error.WriteLine(message));
        return fetcher.EnsureAsync().GetAwaiter().GetResult();
    }

    /// <summary>
    /// The data directory of an existing run: the one given (--data), else the one its configuration
    /// recorded, else MNIST's (runs that recorded none, which is said on stderr: a network trained on other
    /// images of MNIST's shape would otherwise be read on MNIST without a word). A recorded directory that is
    /// gone is an error rather than a fetch of MNIST into its place.
    /// </summary>
    public static string RunDataDirectory(string? given, TrainOptions stored)
    {
        if (given is null && stored.Data is null)
            Console.Error.WriteLine("note: the run records no data directory (a library run without TrainOptions.Data, or one older than the record); reading MNIST: give --data for other images");
        if (given is not null || stored.Data is null) return ResolveDataDirectory(given);
        if (!Directory.Exists(stored.Data.Directory))
            throw new ArgumentException($"the run's data directory {stored.Data.Directory} does not exist; give the data with --data");
        return stored.Data.Directory;
    }
}
