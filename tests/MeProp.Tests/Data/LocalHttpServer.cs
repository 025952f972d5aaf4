using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MeProp.Tests.Data;

/// <summary>
/// A minimal HTTP/1.1 server on 127.0.0.1 (a free port) for the fetch tests: GET of a path in
/// <see cref="Files"/> answers 200 with its bytes, anything else 404. One request per connection.
/// </summary>
internal sealed class LocalHttpServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;

    public LocalHttpServer()
    {
        _listener.Start();
        BaseUrl = new Uri($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/");
        _acceptLoop = AcceptLoopAsync();
    }

    public Uri BaseUrl { get; }

    /// <summary>Bytes served by absolute path, e.g. "/mirror/x.gz".</summary>
    public Dictionary<string, byte[]> Files { get; } = [];

    /// <summary>Paths answered with headers and half their bytes, then nothing more (a connection that stalls).</summary>
    public HashSet<string> Stalled { get; } = [];

    /// <summary>The paths requested so far, in order.</summary>
    public List<string> Requests { get; } = [];

    private async Task AcceptLoopAsync()
    {
        try
        {
            while (true)
            {
                using TcpClient client = await _listener.AcceptTcpClientAsync(_stop.Token);
                try
                {
                    await AnswerAsync(client.GetStream());
                }
                catch (IOException)
                {
                    // The client hung up early; serve the next one.
                }
            }
        }
        catch (Exception) when (_stop.IsCancellationRequested) { }
    }

    private async Task AnswerAsync(NetworkStream stream)
    {
        using var reader = new StreamReader(stream, Encoding.ASCII, leaveOpen: true);
        string requestLine = await reader.ReadLineAsync() ?? "";
        while (!string.IsNullOrEmpty(await reader.ReadLineAsync())) { }
        string path = requestLine.Split(' ').ElementAtOrDefault(1) ?? "";
        lock (Requests) Requests.Add(path);

        byte[]? body;
        lock (Files) Files.TryGetValue(path, out body);
        string status = body is null ? "404 Not Found" : "200 OK";
        body ??= "not here"u8.ToArray();
        byte[] head = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 {status}\r\nContent-Length: {body.Length}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
        await stream.WriteAsync(head);
        bool stalls;
        lock (Stalled) stalls = Stalled.Contains(path);
        if (stalls)
        {
            await stream.WriteAsync(body.AsMemory(0, body.Length / 2));
            await stream.FlushAsync();
            await Task.Delay(Timeout.Infinite, _stop.Token);
        }
        await stream.WriteAsync(body);
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _acceptLoop;
        _stop.Dispose();
    }
}
