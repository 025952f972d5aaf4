using MeProp.Data;

namespace MeProp.Tests.Data;

public sealed class MnistFilesTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    [Fact]
    public void Load_ReadsAnyImageSizeAndGzipVariants()
    {
        Dictionary<string, byte[]> files = IdxTestFiles.WriteMnistLayout(_directory.Path, trainCount: 6, testCount: 4, height: 5, width: 7);
        // Replace two files by their .gz versions.
        foreach (string name in new[] { MnistFiles.TrainImages, MnistFiles.TestLabels })
        {
            File.Delete(_directory.File(name));
            File.WriteAllBytes(_directory.File(name + ".gz"), IdxTestFiles.Gzip(files[name]));
        }

        ImageData data = MnistFiles.Load(_directory.Path, classes: 10);

        Assert.Equal((6, 5, 7), (data.Training.Count, data.Training.Height, data.Training.Width));
        Assert.Equal((4, 5, 7), (data.Test.Count, data.Test.Height, data.Test.Width));
        Assert.Equal(files[MnistFiles.TrainLabels][8..], data.Training.Labels.ToArray());
        Assert.Equal(files[MnistFiles.TestLabels][8..], data.Test.Labels.ToArray());
        Assert.Equal(files[MnistFiles.TrainImages][16] / 255f, data.Training.Images.Span[0]);
    }

    [Fact]
    public void Find_PrefersThePlainFile()
    {
        IdxTestFiles.WriteMnistLayout(_directory.Path, 1, 1, 1, 1);
        File.WriteAllBytes(_directory.File(MnistFiles.TrainLabels + ".gz"), []);

        Assert.Equal(_directory.File(MnistFiles.TrainLabels), MnistFiles.Find(_directory.Path, MnistFiles.TrainLabels));
    }

    [Fact]
    public void Load_MissingFile_NamesTheFullPath()
    {
        IdxTestFiles.WriteMnistLayout(_directory.Path, 2, 2, 3, 3);
        File.Delete(_directory.File(MnistFiles.TestImages));

        var error = Assert.Throws<DataFormatException>(() => MnistFiles.Load(_directory.Path));

        Assert.Equal($"{_directory.File(MnistFiles.TestImages)}: file not found (nor {MnistFiles.TestImages}.gz)", error.Message);
    }

    [Fact]
    public void Load_TestImagesOfAnotherSize_AreAnError()
    {
        IdxTestFiles.WriteMnistLayout(_directory.Path, 2, 2, 3, 3);
        File.WriteAllBytes(_directory.File(MnistFiles.TestImages), IdxTestFiles.Images(2, 4, 4, (_, _) => 0));

        var error = Assert.Throws<DataFormatException>(() => MnistFiles.Load(_directory.Path));

        Assert.StartsWith(_directory.File(MnistFiles.TestImages) + ": images are 4x4, but the training images", error.Message);
    }

    [Fact]
    public void Load_BadFile_ErrorNamesIt()
    {
        IdxTestFiles.WriteMnistLayout(_directory.Path, 2, 2, 3, 3);
        File.WriteAllBytes(_directory.File(MnistFiles.TrainLabels), IdxTestFiles.Labels(1, 2, 3));

        var error = Assert.Throws<DataFormatException>(() => MnistFiles.Load(_directory.Path));

        Assert.StartsWith(_directory.File(MnistFiles.TrainLabels) + ": 3 labels, but", error.Message);
    }
}
