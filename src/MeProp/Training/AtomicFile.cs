namespace MeProp.Training;

/// <summary>Writes a file so that readers see either the old or the new content, never a torn one.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text) => WriteAllBytes(path, new System.Text.UTF8Encoding(false).GetBytes(text));

    public static void WriteAllBytes(string path, byte[] bytes) => Write(path, stream => stream.Write(bytes));

    /// <summary>Writes what <paramref name="write"/> puts into the stream as the whole new content of <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        string temporary = TemporaryPath(path, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                write(stream);
                // On disk before the rename: after a power loss the file is then the old one or the new one, not an empty one.
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            // Best effort (a run directory's claim clears what is left); the write's own error is the one to report.
            try { File.Delete(temporary); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>
    /// The temporary file a write of <paramref name="path"/> goes through: ".NAME.UNIQUE.tmp" beside it, the
    /// pattern <see cref="RunDirectory.Claim"/> clears from a run directory a killed run left.
    /// </summary>
    internal static string TemporaryPath(string path, string unique) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{unique}.tmp");
}
