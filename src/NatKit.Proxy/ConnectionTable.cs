using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;

namespace NatKit.Proxy;

/// <summary>
/// One live flow through the proxy: who the client is, which local port the proxy opened toward which server,
/// and how many bytes moved each way. NATWork's state table, kept by a userspace gateway.
/// </summary>
public sealed class Flow
{
    private long _bytesUp;
    private long _bytesDown;
    private long _requests;

    internal Flow(long id, string kind, IPEndPoint client, long startedAt)
    {
        Id = id;
        Kind = kind;
        Client = client;
        StartedAt = startedAt;
    }

    public long Id { get; }

    /// <summary>"http", "connect", "socks" or "socks-udp".</summary>
    public string Kind { get; internal set; }

    public IPEndPoint Client { get; }

    /// <summary>The proxy's own port on the upstream side (the translated source port).</summary>
    public int ProxyPort { get; internal set; }

    public IPEndPoint? Server { get; internal set; }

    /// <summary>The destination as the client named it (host:port).</summary>
    public string? Target { get; internal set; }

    public long BytesUp => Volatile.Read(ref _bytesUp);

    public long BytesDown => Volatile.Read(ref _bytesDown);

    public long Requests => Volatile.Read(ref _requests);

    /// <summary>A <see cref="TimeProvider.GetTimestamp"/> value.</summary>
    public long StartedAt { get; }

    internal void AddUp(long n) => Interlocked.Add(ref _bytesUp, n);

    internal void AddDown(long n) => Interlocked.Add(ref _bytesDown, n);

    /// <summary>Counts bytes toward the server (<paramref name="up"/>) or toward the client.</summary>
    internal void Add(bool up, long n)
    {
        if (up)
        {
            AddUp(n);
        }
        else
        {
            AddDown(n);
        }
    }

    internal void AddRequest() => Interlocked.Increment(ref _requests);

    internal void SetUpstream(IPEndPoint? server, int proxyPort, string? target)
    {
        Server = server;
        ProxyPort = proxyPort;
        Target = target;
    }
}

/// <summary>The live flows of a proxy, for `natkit proxy status` and the JSON status endpoint.</summary>
public sealed class ConnectionTable
{
    private readonly ConcurrentDictionary<long, Flow> _flows = new();
    private readonly TimeProvider _time;
    private long _nextId;

    public ConnectionTable(TimeProvider time)
    {
        _time = time;
    }

    public int Count => _flows.Count;

    public IReadOnlyList<Flow> Snapshot()
    {
        var list = new List<Flow>(_flows.Count);
        foreach (var (_, f) in _flows)
        {
            list.Add(f);
        }

        list.Sort(static (a, b) => a.Id.CompareTo(b.Id));
        return list;
    }

    public TimeSpan AgeOf(Flow flow)
    {
        ArgumentNullException.ThrowIfNull(flow);
        return _time.GetElapsedTime(flow.StartedAt);
    }

    internal Flow Add(string kind, IPEndPoint client)
    {
        var flow = new Flow(Interlocked.Increment(ref _nextId), kind, client, _time.GetTimestamp());
        _flows[flow.Id] = flow;
        return flow;
    }

    internal void Remove(Flow flow) => _flows.TryRemove(flow.Id, out _);

    /// <summary>Writes the table as JSON: {"flows":[{"id","kind","client","proxyPort","server","target",
    /// "bytesUp","bytesDown","requests","ageSeconds"}]}.</summary>
    public void WriteJson(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        writer.WriteNumber("count", _flows.Count);
        writer.WriteStartArray("flows");
        foreach (var f in Snapshot())
        {
            writer.WriteStartObject();
            writer.WriteNumber("id", f.Id);
            writer.WriteString("kind", f.Kind);
            writer.WriteString("client", f.Client.ToString());
            writer.WriteNumber("proxyPort", f.ProxyPort);
            writer.WriteString("server", f.Server?.ToString());
            writer.WriteString("target", f.Target);
            writer.WriteNumber("bytesUp", f.BytesUp);
            writer.WriteNumber("bytesDown", f.BytesDown);
            writer.WriteNumber("requests", f.Requests);
            writer.WriteNumber("ageSeconds", Math.Round(AgeOf(f).TotalSeconds, 3));
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        writer.WriteEndObject();
    }
}
