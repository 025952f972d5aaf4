namespace MeProp.Training;

/// <summary>
/// A checkpoint file is malformed or lacks what the caller asked for. The message is one line that names
/// the file and says what is wrong.
/// </summary>
public sealed class CheckpointFormatException : Exception
{
    public CheckpointFormatException(string message) : base(message) { }

    public CheckpointFormatException(string message, Exception inner) : base(message, inner) { }
}
