namespace MeProp.Data;

/// <summary>How to read a data directory where its format leaves a choice.</summary>
public sealed record DataOptions
{
    /// <summary>IDX: the number of classes (default: the labels say).</summary>
    public int? Classes { get; init; }

    /// <summary>CIFAR-100: the 20 coarse superclasses instead of the 100 fine classes.</summary>
    public bool Cifar100Coarse { get; init; }
}

/// <summary>
/// Loads a data directory in whichever format its contents show: IDX files in MNIST's names (MNIST,
/// Fashion-MNIST, KMNIST; plain or .gz), CIFAR-10 or CIFAR-100 binary (files, their folder, or the
/// .tar.gz), or an image folder (train/&lt;class&gt;/..., test/&lt;class&gt;/...).
/// </summary>
public static class DataDirectory
{
    /// <summary>The format <paramref name="directory"/> holds (idx, cifar10, cifar100, image-folder), or null.</summary>
    public static string? Detect(string directory) =>
        !Directory.Exists(directory) ? null
        : MnistFiles.Present(directory) ? "idx"
        : CifarBinary.FindCifar10(directory) is not null ? "cifar10"
        : CifarBinary.FindCifar100(directory) is not null ? "cifar100"
        : ImageFolder.Present(directory) ? "image-folder"
        : null;

    public static ImageData Load(string directory, DataOptions? options = null)
    {
        options ??= new DataOptions();
        return Detect(directory) switch
        {
            "idx" => MnistFiles.Load(directory, options.Classes),
            "cifar10" => CifarBinary.LoadCifar10(CifarBinary.FindCifar10(directory)!),
            "cifar100" => CifarBinary.LoadCifar100(CifarBinary.FindCifar100(directory)!, options.Cifar100Coarse),
            "image-folder" => ImageFolder.Load(directory),
            _ => throw new DataFormatException(
                $"{Path.GetFullPath(directory)}: no data set found. Looked for: IDX files ({string.Join(", ", MnistFiles.Names)}, plain or .gz); " +
                $"CIFAR-10 binary ({string.Join(", ", CifarBinary.Cifar10Training)}, {CifarBinary.Cifar10Test}, or {CifarBinary.Cifar10Folder}/, or {CifarBinary.Cifar10Archive}); " +
                $"CIFAR-100 binary ({CifarBinary.Cifar100Training}, {CifarBinary.Cifar100Test}, or {CifarBinary.Cifar100Folder}/, or {CifarBinary.Cifar100Archive}); " +
                $"an image folder ({ImageFolder.TrainFolder}/<class>/*.png and {ImageFolder.TestFolder}/<class>/*.png)"),
        };
    }
}
