using System.IO.Compression;

namespace MeProp.Data;

/// <summary>
/// Downloads <c>{baseUrl}{name}.gz</c> for each file and decompresses it, as the MNIST mirrors serve them.
/// </summary>
public sealed class HttpMirrorSource : IMnistSource
{
    private readonly Uri _baseUrl;
    private readonly HttpClient _httpClient;

    /// <param name="baseUrl">The directory URL; a missing trailing slash is added.</param>
    /// <param name="httpClient">The client to use; the caller owns it.</param>
    public HttpMirrorSource(Uri baseUrl, HttpClient httpClient)
    {
        // Relative resolution drops the last path segment unless the base ends with a slash.
        _baseUrl = baseUrl.AbsoluteUri.EndsWith('/') ? baseUrl : new Uri(baseUrl.AbsoluteUri + "/");
        _httpClient = httpClient;
    }

    public string Description => _baseUrl.AbsoluteUri;

    public async Task FetchAsync(IReadOnlyList<string> fileNames, string stagingDirectory, Action<string>? progress,
        CancellationToken cancellationToken)
    {
        foreach (string name in fileNames)
        {
            var url = new Uri(_baseUrl, name + ".gz");
            progress?.Invoke($"downloading {url}");
            try
            {
                using HttpResponseMessage response =
                    await _httpClient.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
                if (!response.IsSuccessStatusCode)
                    throw new IOException($"HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
                await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken);
                await using var gzip = new GZipStream(body, CompressionMode.Decompress);
                await using var output = new FileStream(Path.Combine(stagingDirectory, name), FileMode.CreateNew);
                await gzip.CopyToAsync(output, cancellationToken);
            }
            catch (Exception e) when (e is HttpRequestException or IOException or InvalidDataException
                                      || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                // A TaskCanceledException without our token cancelled is HttpClient's timeout.
                string reason = e is OperationCanceledException ? "timed out" : e.Message;
                throw new IOException($"{url}: {reason}", e);
            }
        }
    }
}
