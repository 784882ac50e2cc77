using System.Diagnostics.Metrics;

namespace NatKit.Traversal.Peer;

/// <summary>
/// The meter <c>NatKit.Traversal.Peer</c> of one <see cref="PeerNetwork"/> (docs/operations.md lists the series):
/// pipes opened and closed, links made and traversal attempts as counters, active pipes and links as gauges, and
/// the pipes' bytes each way as an observable counter read at collection time (the pipes' own counts, so the copy
/// loops add nothing per buffer). Labels: <c>path</c> = direct, hairpin, relay; <c>kind</c> = forward, exposed;
/// <c>direction</c> = to_peer, from_peer; <c>result</c> = succeeded, failed.
/// </summary>
internal sealed class PeerNetworkMetrics : IDisposable
{
    public const string MeterName = "NatKit.Traversal.Peer";

    private static readonly PathKind[] Paths = [PathKind.Direct, PathKind.Hairpin, PathKind.Relay];
    private static readonly KeyValuePair<string, object?>[] PathTags =
        [new("path", "direct"), new("path", "hairpin"), new("path", "relay")];

    private readonly Meter _meter = new(MeterName);
    private readonly Counter<long> _opened;
    private readonly Counter<long> _closed;
    private readonly Counter<long> _links;
    private readonly Counter<long> _traversals;

    /// <param name="pipes">The pipe table now (for the gauges and the live pipes' bytes).</param>
    /// <param name="links">The links now.</param>
    /// <param name="closedBytes">Bytes carried by pipes that have ended, by path and direction (true: to the peer).</param>
    public PeerNetworkMetrics(Func<IReadOnlyList<PipeInfo>> pipes, Func<IReadOnlyList<PeerLinkInfo>> links,
        Func<PathKind, bool, long> closedBytes)
    {
        _opened = _meter.CreateCounter<long>("natkit.peer.pipes.opened", "{pipe}", "Pipes that began carrying bytes");
        _closed = _meter.CreateCounter<long>("natkit.peer.pipes.closed", "{pipe}", "Pipes that ended");
        _meter.CreateObservableGauge("natkit.peer.pipes.active", () =>
        {
            var rows = pipes();
            return ByPath(p => Count(rows, r => r.Path == p));
        }, "{pipe}", "Pipes open now");
        _meter.CreateObservableCounter("natkit.peer.pipe.bytes", () =>
        {
            var rows = pipes();
            var result = new List<Measurement<long>>(2 * Paths.Length);
            foreach (var path in Paths)
            {
                long toPeer = closedBytes(path, true), fromPeer = closedBytes(path, false);
                foreach (var r in rows)
                {
                    if (r.Path == path)
                    {
                        toPeer += r.BytesToPeer;
                        fromPeer += r.BytesFromPeer;
                    }
                }

                result.Add(new Measurement<long>(toPeer, new("direction", "to_peer"), Tag(path)));
                result.Add(new Measurement<long>(fromPeer, new("direction", "from_peer"), Tag(path)));
            }

            return result;
        }, "By", "Bytes the pipes carried: to_peer read from the local TCP side, from_peer written to it");
        _links = _meter.CreateCounter<long>("natkit.peer.links.opened", "{link}", "Paths to peers made (dialed or accepted)");
        _meter.CreateObservableGauge("natkit.peer.links.active", () =>
        {
            var rows = links();
            return ByPath(p => Count(rows, r => r.Path == p));
        }, "{link}", "Paths to peers held now");
        _traversals = _meter.CreateCounter<long>("natkit.peer.traversals", "{attempt}",
            "Connection attempts to peers through the traversal service (this node dialing)");
    }

    public void PipeOpened(PipeInfo pipe) => _opened.Add(1, Tag(pipe.Path), Kind(pipe.Kind));

    public void PipeClosed(PipeInfo pipe) => _closed.Add(1, Tag(pipe.Path), Kind(pipe.Kind));

    public void LinkOpened(PathKind path) => _links.Add(1, Tag(path));

    public void Traversal(PathKind? path) =>
        _traversals.Add(1, new KeyValuePair<string, object?>("result", path is null ? "failed" : "succeeded"),
            path is { } p ? Tag(p) : new("path", "none"));

    public void Dispose() => _meter.Dispose();

    private static KeyValuePair<string, object?> Tag(PathKind path) => PathTags[Array.IndexOf(Paths, path)];

    private static KeyValuePair<string, object?> Kind(PipeKind kind) =>
        new("kind", kind == PipeKind.Forward ? "forward" : "exposed");

    private static Measurement<int>[] ByPath(Func<PathKind, int> count) =>
        Array.ConvertAll(Paths, p => new Measurement<int>(count(p), Tag(p)));

    private static int Count<T>(IReadOnlyList<T> rows, Func<T, bool> match)
    {
        var n = 0;
        foreach (var r in rows)
        {
            n += match(r) ? 1 : 0;
        }

        return n;
    }
}
