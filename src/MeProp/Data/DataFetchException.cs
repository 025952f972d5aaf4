namespace MeProp.Data;

/// <summary>
/// A data set could not be fetched from any source. The message is one line that lists every source
/// tried and why each failed.
/// </summary>
public sealed class DataFetchException : Exception
{
    public DataFetchException(string message) : base(message) { }
}
