using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace MeProp.Data;

/// <summary>
/// Where a run's images came from: the data directory and a fingerprint of what was read from it, kept in
/// the run's configuration so that resuming or evaluating the run reads the same images, from the same
/// directory unless told otherwise, and refuses different ones.
/// </summary>
/// <param name="Directory">The data directory, as a full path.</param>
/// <param name="Fingerprint">SHA-256 of the images and labels as loaded (<see cref="FingerprintOf"/>), in lowercase hex.</param>
public sealed record DataSource(string Directory, string Fingerprint)
{
    /// <summary>The source of <paramref name="data"/>, read from <paramref name="directory"/>.</summary>
    public static DataSource Of(string directory, ImageData data) => new(Path.GetFullPath(directory), FingerprintOf(data));

    /// <summary>
    /// SHA-256 over the shape of the images (channels, height, width, classes; int32), then the training
    /// images (float32), labels, test images and labels, each set's count first (int32; little-endian
    /// throughout). Taken from the decoded values, so the same images give the same fingerprint whether
    /// their files are compressed or not; the class names are not part of it.
    /// </summary>
    public static string FingerprintOf(ImageData data)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var train = data.Training;
        AppendInts(hash, train.Channels, train.Height, train.Width, train.Classes);
        foreach (var set in new[] { data.Training, data.Test })
        {
            AppendInts(hash, set.Count);
            hash.AppendData(MemoryMarshal.AsBytes(set.Images.Span));
            hash.AppendData(set.Labels.Span);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static void AppendInts(IncrementalHash hash, params ReadOnlySpan<int> values)
    {
        Span<byte> bytes = stackalloc byte[4];
        foreach (int value in values)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
            hash.AppendData(bytes);
        }
    }
}
