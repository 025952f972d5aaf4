namespace MeProp.Training;

/// <summary>Writes a file so that readers see either the old or the new content, never a torn one.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text)
    {
        string temporary = TemporaryPath(path, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        File.WriteAllText(temporary, text);
        File.Move(temporary, path, overwrite: true);
    }

    public static void WriteAllBytes(string path, byte[] bytes)
    {
        string temporary = TemporaryPath(path, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        File.WriteAllBytes(temporary, bytes);
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>
    /// The temporary file a write of <paramref name="path"/> goes through: ".NAME.UNIQUE.tmp" beside it, the
    /// pattern <see cref="RunDirectory.Claim"/> clears from a run directory a killed run left.
    /// </summary>
    internal static string TemporaryPath(string path, string unique) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{unique}.tmp");
}
