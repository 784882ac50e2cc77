using System.Globalization;
using System.Text.Json;
using NatKit.Nat;
using NatKit.Net;

namespace NatKit.Linux;

/// <summary>One flow as the control socket reports it.</summary>
public sealed record GatewayFlow(string Protocol, string Inside, string Outside, string Remote, string TcpState,
    long IdleMilliseconds, long ExpiresInMilliseconds);

/// <summary>One explicit (NAT-PMP, PCP, UPnP) mapping as the control socket reports it.</summary>
public sealed record GatewayMapping(string Protocol, string Internal, string External, uint SecondsLeft);

/// <summary>What <c>natkit gateway stats</c> shows: the data plane's and the engine's counters.</summary>
public sealed record GatewayStatus(GatewayStats DataPlane, NatCounters Engine, int Sessions, int Mappings,
    long TableBytes, string InsideOffloads, string OutsideOffloads);

/// <summary>
/// The running gateway's control socket: a Unix stream socket (default <c>/run/natkit/NAME.sock</c>) that answers
/// one line, <c>flows</c>, <c>mappings</c> or <c>stats</c>, with one JSON document and closes. A filesystem socket, not a loopback
/// port, because the gateway runs inside its own network namespace, whose loopback nobody else can reach.
/// </summary>
public sealed class GatewayControl : IAsyncDisposable
{
    /// <summary>Where control sockets live.</summary>
    public const string Directory = "/run/natkit";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    private readonly Gateway _gateway;
    private readonly ControlSocket _socket;

    private GatewayControl(Gateway gateway, string path)
    {
        _gateway = gateway;
        _socket = ControlSocket.Listen(path, AnswerAsync);
    }

    public string Path => _socket.Path;

    /// <summary>The control socket path for a gateway name.</summary>
    public static string PathFor(string name) => System.IO.Path.Combine(Directory, name + ".sock");

    /// <summary>Where `natkit lab netns up` logs a gateway it starts (kept after `down`, for reading).</summary>
    public static string LogPathFor(string name) => System.IO.Path.Combine(Directory, name + ".log");

    /// <summary>Where `natkit lab netns up` writes the policy of a gateway it starts (removed by `down`).</summary>
    public static string PolicyPathFor(string name) => System.IO.Path.Combine(Directory, name + ".policy.json");

    /// <summary>Listens on <paramref name="path"/> (a stale socket file from a crashed run is replaced).</summary>
    public static GatewayControl Listen(Gateway gateway, string path)
    {
        ArgumentNullException.ThrowIfNull(gateway);
        return new GatewayControl(gateway, path);
    }

    /// <summary>Asks a running gateway for its flow table.</summary>
    public static async Task<IReadOnlyList<GatewayFlow>> FlowsAsync(string path, CancellationToken cancellationToken = default) =>
        JsonSerializer.Deserialize<List<GatewayFlow>>(await AskAsync(path, "flows", cancellationToken).ConfigureAwait(false), Json) ?? [];

    /// <summary>Asks a running gateway for its explicit mappings.</summary>
    public static async Task<IReadOnlyList<GatewayMapping>> MappingsAsync(string path, CancellationToken cancellationToken = default) =>
        JsonSerializer.Deserialize<List<GatewayMapping>>(await AskAsync(path, "mappings", cancellationToken).ConfigureAwait(false), Json) ?? [];

    /// <summary>The explicit mappings of a gateway, taken on its data-plane thread.</summary>
    public static Task<IReadOnlyList<GatewayMapping>> MappingsOf(Gateway gateway)
    {
        ArgumentNullException.ThrowIfNull(gateway);
        return gateway.DataPlane.QueryAsync<IReadOnlyList<GatewayMapping>>(e =>
        {
            var now = gateway.DataPlane.EngineNow;
            return [.. e.ListMappings(now).Select(m => new GatewayMapping(m.Protocol.ToString().ToLowerInvariant(), m.Internal.ToString(),
                m.External.ToString(), m.SecondsLeft(now)))];
        });
    }

    /// <summary>Asks a running gateway for its counters.</summary>
    public static async Task<GatewayStatus> StatusAsync(string path, CancellationToken cancellationToken = default) =>
        JsonSerializer.Deserialize<GatewayStatus>(await AskAsync(path, "stats", cancellationToken).ConfigureAwait(false), Json)
        ?? throw new InvalidDataException("the gateway sent an empty answer");

    /// <summary>The flows of a gateway, taken on its data-plane thread.</summary>
    public static async Task<IReadOnlyList<GatewayFlow>> FlowsOf(Gateway gateway)
    {
        ArgumentNullException.ThrowIfNull(gateway);
        var (now, flows) = await gateway.DataPlane.QueryAsync(e => (gateway.DataPlane.EngineNow, e.SnapshotFlows()))
            .ConfigureAwait(false);
        var list = new List<GatewayFlow>(flows.Count);
        foreach (var f in flows)
        {
            list.Add(new GatewayFlow(f.Protocol.ToString().ToLowerInvariant(), f.Internal.ToString(), f.External.ToString(),
                f.Remote.ToString(), f.TcpState.ToString(), Math.Max(0, now - f.LastRefresh),
                Math.Max(0, f.ExpiresAt - now)));
        }

        return list;
    }

    /// <summary>The counters of a gateway, taken on its data-plane thread.</summary>
    public static Task<GatewayStatus> StatusOf(Gateway gateway)
    {
        ArgumentNullException.ThrowIfNull(gateway);
        var offloads = gateway.Offloads;
        return gateway.DataPlane.QueryAsync(e => new GatewayStatus(gateway.DataPlane.Stats, e.Counters, e.SessionCount,
            e.MappingCount, e.TableBytes, offloads.Inside.ToString(), offloads.Outside.ToString()));
    }

    public ValueTask DisposeAsync() => _socket.DisposeAsync();

    private static Task<string> AskAsync(string path, string command, CancellationToken cancellationToken) =>
        ControlSocket.AskAsync(path, command, "`natkit gateway run`", cancellationToken);

    private async Task<string> AnswerAsync(string command, CancellationToken cancellationToken) => command switch
    {
        "flows" => JsonSerializer.Serialize(await FlowsOf(_gateway).ConfigureAwait(false), Json),
        "stats" => JsonSerializer.Serialize(await StatusOf(_gateway).ConfigureAwait(false), Json),
        "mappings" => JsonSerializer.Serialize(await MappingsOf(_gateway).ConfigureAwait(false), Json),
        _ => JsonSerializer.Serialize(new { error = string.Create(CultureInfo.InvariantCulture, $"unknown command '{command}'") }, Json),
    };
}
