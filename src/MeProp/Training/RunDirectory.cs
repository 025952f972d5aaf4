namespace MeProp.Training;

/// <summary>How a training run takes its output directory.</summary>
public enum RunDirectoryMode
{
    /// <summary>A new run: the directory must be absent or empty.</summary>
    New,
    /// <summary>Continue the run the directory holds.</summary>
    Resume,
    /// <summary>Start over: a non-empty directory is moved aside (renamed DIR.old-N) first, never deleted.</summary>
    Overwrite,
}

/// <summary>Thrown when a new run is pointed at a directory that already holds something.</summary>
public sealed class RunDirectoryInUseException(string message) : InvalidOperationException(message);

/// <summary>
/// An output directory held by one training run for as long as this object lives. Claiming it enforces
/// the life cycle of a run directory: a new run never writes into an earlier run (which would mix the two
/// runs' metrics and replace its checkpoints), starting over keeps the earlier run under another name,
/// and two processes never train into the same directory at once (an exclusive lock on DIR/run.lock).
/// Temporary files that a killed process left behind are removed.
/// </summary>
public sealed class RunDirectory : IDisposable
{
    public const string LockFile = "run.lock";

    private readonly FileStream _lock;

    private RunDirectory(string path, FileStream runLock, string? movedAside)
    {
        Path = path;
        _lock = runLock;
        MovedAside = movedAside;
    }

    public string Path { get; }

    /// <summary>Where <see cref="RunDirectoryMode.Overwrite"/> moved the earlier content, or null.</summary>
    public string? MovedAside { get; }

    /// <summary>
    /// Takes <paramref name="path"/> for a run. Throws <see cref="RunDirectoryInUseException"/> when a new run
    /// meets a non-empty directory or another process holds it, and an <see cref="IOException"/> or
    /// <see cref="UnauthorizedAccessException"/> when it cannot be written, before any training.
    /// </summary>
    public static RunDirectory Claim(string path, RunDirectoryMode mode)
    {
        string full = System.IO.Path.GetFullPath(path);
        string? movedAside = null;
        if (Directory.Exists(full) && HoldsAnything(full))
        {
            if (mode == RunDirectoryMode.New)
                throw new RunDirectoryInUseException($"{full}: the directory is not empty (it holds {Describe(full)}); a new run needs an empty or absent directory");
            if (mode == RunDirectoryMode.Overwrite)
            {
                // Whether a process trains there is asked of its lock first: on Unix a directory is renamed even
                // while a process holds a file in it, and that process would go on writing under the new run's
                // name. The lock is let go before the move, which Windows refuses while a file in it is open.
                TakeLock(full).Dispose();
                movedAside = FreeName(full);
                Directory.Move(full, movedAside);
            }
        }
        Directory.CreateDirectory(full);
        var runLock = TakeLock(full);
        // What a killed run's atomic writes left (AtomicFile.TemporaryPath).
        foreach (string leftover in Directory.GetFiles(full, ".*.tmp")) File.Delete(leftover);
        return new RunDirectory(full, runLock, movedAside);
    }

    public void Dispose() => _lock.Dispose();

    private static FileStream TakeLock(string directory)
    {
        try
        {
            return new FileStream(System.IO.Path.Combine(directory, LockFile), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException) when (File.Exists(System.IO.Path.Combine(directory, LockFile)))
        {
            throw new RunDirectoryInUseException($"{directory}: another process is training in this directory");
        }
    }

    private static bool HoldsAnything(string directory) =>
        Directory.EnumerateFileSystemEntries(directory).Any(entry => System.IO.Path.GetFileName(entry) != LockFile);

    private static string Describe(string directory)
    {
        var names = Directory.EnumerateFileSystemEntries(directory).Select(System.IO.Path.GetFileName)
            .Where(name => name != LockFile).Order(StringComparer.Ordinal).ToList();
        return string.Join(", ", names.Take(3)) + (names.Count > 3 ? $" and {names.Count - 3} more" : "");
    }

    private static string FreeName(string directory)
    {
        for (int n = 1; ; n++)
        {
            string candidate = $"{directory}.old-{n}";
            if (!Directory.Exists(candidate) && !File.Exists(candidate)) return candidate;
        }
    }
}
