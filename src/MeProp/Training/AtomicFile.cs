namespace MeProp.Training;

/// <summary>Writes a file so that readers see either the old or the new content, never a torn one.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text)
    {
        string temporary = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        File.WriteAllText(temporary, text);
        File.Move(temporary, path, overwrite: true);
    }
}
