using System.Text;
using BenchmarkDotNet.Attributes;
using NatKit.Proxy.Http;

namespace NatKit.Benchmarks.Proxy;

/// <summary>The proxy's per-request hot path without sockets: parse a browser-sized request head, check its
/// target, write the head sent upstream; and parse a chunk-size line. All must allocate 0 B.</summary>
[MemoryDiagnoser]
public class HeadParserBenchmarks
{
    private readonly byte[] _request = Encoding.ASCII.GetBytes(
        "GET http://example.com:8080/index.html?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n" +
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 Safari/537.36\r\n" +
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n" +
        "Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\nProxy-Connection: keep-alive\r\n" +
        "Cookie: a=1; b=2; session=0123456789abcdef\r\nUpgrade-Insecure-Requests: 1\r\nCache-Control: max-age=0\r\n\r\n");

    private readonly HttpHead _head = new(128);
    private readonly byte[] _output = new byte[8192];
    private readonly byte[] _via = "Via: 1.1 natkit\r\n"u8.ToArray();
    private readonly byte[] _chunkLine = "1f40;name=value"u8.ToArray();

    [Benchmark]
    public int ParseAndRewriteRequest()
    {
        HttpHeadParser.ParseRequest(_request, _head);
        RequestTarget.TryParse(_head.Target.Of(_request), false, out var target, out _);
        var w = new HeadWriter(_output);
        HeadRewriter.WriteRequest(_request, _head, target, false, BodyFraming.None, _via, ref w);
        return w.Length;
    }

    [Benchmark]
    public long ParseChunkSize()
    {
        HttpHeadParser.TryParseChunkSize(_chunkLine, out var size);
        return size;
    }
}
