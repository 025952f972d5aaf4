using MeProp.Data;

namespace MeProp.Tests.Data;

/// <summary>The fingerprint a run records of its images: by content, whatever the files' compression, and sensitive to every part.</summary>
public class DataSourceTests
{
    private static string FingerprintOf(Dictionary<string, byte[]> files, bool gzip)
    {
        using var directory = new TempDirectory();
        foreach ((string name, byte[] bytes) in files)
            File.WriteAllBytes(directory.File(gzip ? name + ".gz" : name), gzip ? IdxTestFiles.Gzip(bytes) : bytes);
        var source = DataSource.Of(directory.Path, DataDirectory.Load(directory.Path));
        Assert.Equal(Path.GetFullPath(directory.Path), source.Directory);
        return source.Fingerprint;
    }

    [Fact]
    public void SameImagesGiveTheSameFingerprintAndAnyChangeAnother()
    {
        using var scratch = new TempDirectory();
        var files = IdxTestFiles.WriteMnistLayout(scratch.Path, trainCount: 12, testCount: 4, height: 3, width: 5);
        string plain = FingerprintOf(files, gzip: false);
        Assert.Matches("^[0-9a-f]{64}$", plain);
        Assert.Equal(plain, FingerprintOf(files, gzip: true));

        foreach (string name in files.Keys)
        {
            var changed = files.ToDictionary(f => f.Key, f => (byte[])f.Value.Clone());
            changed[name][^1] ^= 1; // the last pixel or label of one file
            Assert.NotEqual(plain, FingerprintOf(changed, gzip: false));
        }
    }
}
