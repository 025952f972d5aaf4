namespace MeProp.Data;

/// <summary>
/// A data file is missing or malformed. The message is one line that names the file and says what is
/// wrong, so the CLI can print it as it is.
/// </summary>
public sealed class DataFormatException : Exception
{
    public DataFormatException(string message) : base(message) { }

    public DataFormatException(string message, Exception inner) : base(message, inner) { }
}
