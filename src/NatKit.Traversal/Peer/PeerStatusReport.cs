using System.Text.Json;
using System.Text.Json.Serialization;

namespace NatKit.Traversal.Peer;

/// <summary>
/// One named record of a node's status, as `natkit peer status --json` prints it and the control socket sends it:
/// an array of records, each with <c>record</c> saying which kind it is (<c>node</c>, <c>peer</c>, <c>pipe</c>,
/// <c>forward</c>, <c>expose</c>).
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "record")]
[JsonDerivedType(typeof(PeerStatusNode), "node")]
[JsonDerivedType(typeof(PeerStatusPeer), "peer")]
[JsonDerivedType(typeof(PeerStatusPipe), "pipe")]
[JsonDerivedType(typeof(PeerStatusForward), "forward")]
[JsonDerivedType(typeof(PeerStatusExposed), "expose")]
public abstract record PeerStatusRecord;

/// <summary>The node itself: its id and name, the UDP endpoint it bound, where the traversal saw it from, its NAT's
/// profile and its TURN relayed endpoint.</summary>
public sealed record PeerStatusNode(string Id, string? Name, string LocalEndPoint, string? PublicEndPoint, string Nat,
    string? Relay) : PeerStatusRecord;

/// <summary>A peer: known from the config, or connected; its path now (<c>direct</c>, <c>hairpin</c>,
/// <c>relay</c>; null when no link is up), how it was found, the endpoint it is reached at, the last check's round
/// trip.</summary>
public sealed record PeerStatusPeer(string Id, string? Name, bool Known, string? Path, string? Method,
    string? EndPoint, double? RttMilliseconds) : PeerStatusRecord;

/// <summary>A pipe: its number, peer, kind (<c>forward</c> or <c>exposed</c>), service, path, bytes each way and
/// age.</summary>
public sealed record PeerStatusPipe(long Id, string Peer, string? PeerName, string Kind, string Service, string Path,
    long BytesToPeer, long BytesFromPeer, double AgeSeconds) : PeerStatusRecord;

/// <summary>A forwarded port: the local TCP endpoint, the peer and its service.</summary>
public sealed record PeerStatusForward(string Listen, string Peer, string? PeerName, string Service) : PeerStatusRecord;

/// <summary>An exposed service: its name, target and the peers allowed (null: every peer let in).</summary>
public sealed record PeerStatusExposed(string Name, string Target, IReadOnlyList<string>? Peers) : PeerStatusRecord;

/// <summary>A node's status as records (<see cref="PeerStatusRecord"/>) and their JSON.</summary>
public static class PeerStatusReport
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>The records of <paramref name="status"/>: the node, every known or linked peer, the pipes, the
    /// forwarded ports and the exposed services, in that order.</summary>
    public static IReadOnlyList<PeerStatusRecord> From(PeerNetworkStatus status, IReadOnlyCollection<PeerInfo> known)
    {
        ArgumentNullException.ThrowIfNull(status);
        ArgumentNullException.ThrowIfNull(known);
        var names = known.Where(k => k.Name is not null).ToDictionary(k => k.Id, k => k.Name);
        var records = new List<PeerStatusRecord>
        {
            new PeerStatusNode(status.Id.ToString(), status.Name, status.LocalEndPoint.ToString(),
                status.PublicEndPoint?.ToString(), status.Nat, status.Relay?.ToString()),
        };

        var seen = new HashSet<Identity.NodeId>();
        foreach (var k in known.OrderBy(k => k.Name ?? k.Id.ToString(), StringComparer.Ordinal))
        {
            seen.Add(k.Id);
            var link = status.Links.LastOrDefault(l => l.Peer == k.Id);
            records.Add(Peer(k.Id, k.Name, known: true, link));
        }

        foreach (var l in status.Links)
        {
            if (seen.Add(l.Peer))
            {
                records.Add(Peer(l.Peer, null, known: false, l));
            }
        }

        foreach (var p in status.Pipes)
        {
            records.Add(new PeerStatusPipe(p.Id, p.Peer.ToString(), names.GetValueOrDefault(p.Peer),
                p.Kind == PipeKind.Forward ? "forward" : "exposed", p.Service, Name(p.Path), p.BytesToPeer,
                p.BytesFromPeer, Math.Round(p.Age.TotalSeconds, 3)));
        }

        foreach (var f in status.Forwards)
        {
            records.Add(new PeerStatusForward(f.Listen.ToString(), f.Peer.ToString(), names.GetValueOrDefault(f.Peer), f.Service));
        }

        foreach (var e in status.Exposed)
        {
            records.Add(new PeerStatusExposed(e.Name, e.Target.ToString(), e.Peers?.Select(p => names.GetValueOrDefault(p) ?? p.ToString()).ToList()));
        }

        return records;
    }

    /// <summary>The records as one JSON array.</summary>
    public static string ToJson(IReadOnlyList<PeerStatusRecord> records) => JsonSerializer.Serialize(records, Json);

    /// <summary>Reads <see cref="ToJson"/>'s array back.</summary>
    /// <exception cref="JsonException">Not such an array.</exception>
    public static IReadOnlyList<PeerStatusRecord> FromJson(string json) =>
        JsonSerializer.Deserialize<List<PeerStatusRecord>>(json, Json) ?? throw new JsonException("null status");

    /// <summary>A path as tables and JSON write it.</summary>
    public static string Name(PathKind path) => path switch
    {
        PathKind.Direct => "direct",
        PathKind.Hairpin => "hairpin",
        _ => "relay",
    };

    private static PeerStatusPeer Peer(Identity.NodeId id, string? name, bool known, PeerLinkInfo? link) =>
        new(id.ToString(), name, known, link is null ? null : Name(link.Path),
            link is null ? null : JsonNamingPolicy.KebabCaseLower.ConvertName(link.Method.ToString()),
            link?.RemoteEndPoint.ToString(),
            link is null ? null : Math.Round(link.Rtt.TotalMilliseconds, 3, MidpointRounding.AwayFromZero));

}
