using System.IO.Compression;

namespace MeProp.Data;

/// <summary>
/// Downloads each file from a directory URL: <c>{baseUrl}{name}.gz</c>, decompressed, where the mirror serves
/// gzipped files the cache keeps uncompressed (the MNIST and Fashion-MNIST IDX files), else
/// <c>{baseUrl}{name}</c> as it is (the CIFAR-10 archive).
/// </summary>
public sealed class HttpMirrorSource : IDataSource
{
    private readonly Uri _baseUrl;
    private readonly HttpClient _httpClient;
    private readonly bool _gzipped;

    /// <param name="baseUrl">The directory URL; a missing trailing slash is added.</param>
    /// <param name="httpClient">The client to use; the caller owns it. Its <see cref="HttpClient.Timeout"/> bounds each
    /// file's whole download, body included.</param>
    /// <param name="gzipped">Whether the mirror serves each file as <c>{name}.gz</c>, to be decompressed.</param>
    public HttpMirrorSource(Uri baseUrl, HttpClient httpClient, bool gzipped = true)
    {
        // Relative resolution drops the last path segment unless the base ends with a slash.
        _baseUrl = baseUrl.AbsoluteUri.EndsWith('/') ? baseUrl : new Uri(baseUrl.AbsoluteUri + "/");
        _httpClient = httpClient;
        _gzipped = gzipped;
    }

    public string Description => _baseUrl.AbsoluteUri;

    public async Task FetchAsync(IReadOnlyList<string> fileNames, string stagingDirectory, Action<string>? progress,
        CancellationToken cancellationToken)
    {
        foreach (string name in fileNames)
        {
            var url = new Uri(_baseUrl, _gzipped ? name + ".gz" : name);
            progress?.Invoke($"downloading {url}");
            // With ResponseHeadersRead the client's own timeout ends with the headers: a connection that stalls in
            // the body would wait for ever, so the whole file gets the timeout here.
            using var fileTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            fileTimeout.CancelAfter(_httpClient.Timeout);
            try
            {
                using HttpResponseMessage response =
                    await _httpClient.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, fileTimeout.Token);
                if (!response.IsSuccessStatusCode)
                    throw new IOException($"HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
                await using Stream body = await response.Content.ReadAsStreamAsync(fileTimeout.Token);
                await using Stream content = _gzipped ? new GZipStream(body, CompressionMode.Decompress) : body;
                await using var output = new FileStream(Path.Combine(stagingDirectory, name), FileMode.CreateNew);
                await content.CopyToAsync(output, fileTimeout.Token);
            }
            catch (Exception e) when (e is HttpRequestException or IOException or InvalidDataException
                                      || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                // Cancelled without the caller's token: the timeout, the client's or the file's.
                string reason = e is OperationCanceledException ? "timed out" : e.Message;
                throw new IOException($"{url}: {reason}", e);
            }
        }
    }
}
