using System.Net;
using Microsoft.Extensions.Logging;

namespace NatKit.Turn.Server;

/// <summary>
/// What an operator sees of a TURN server: allocations made, refreshed and deleted (with why and how long they
/// lived), credentials refused, peers refused by policy. Event ids are stable so log pipelines can match on them.
/// Per-packet events are never logged (the meters count them).
/// </summary>
internal static partial class TurnLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information,
        Message = "allocation for {User} from {Client} ({Transport}): relayed {RelayedV4} {RelayedV6}, lifetime {LifetimeSeconds} s")]
    public static partial void AllocationCreated(ILogger logger, string user, IPEndPoint client, string transport,
        string relayedV4, string relayedV6, double lifetimeSeconds);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information,
        Message = "allocation for {User} from {Client} refreshed: lifetime {LifetimeSeconds} s")]
    public static partial void AllocationRefreshed(ILogger logger, string user, IPEndPoint client, double lifetimeSeconds);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information,
        Message = "allocation for {User} from {Client} deleted ({Reason}) after {AgeSeconds} s")]
    public static partial void AllocationDeleted(ILogger logger, string user, IPEndPoint client, string reason, double ageSeconds);

    [LoggerMessage(EventId = 110, Level = LogLevel.Warning,
        Message = "authentication failed from {Client}: {Reason} (user {User})")]
    public static partial void AuthenticationFailed(ILogger logger, IPEndPoint client, string reason, string user);

    [LoggerMessage(EventId = 111, Level = LogLevel.Debug, Message = "challenge to {Client}: {Reason}")]
    public static partial void Challenged(ILogger logger, IPEndPoint client, string reason);

    [LoggerMessage(EventId = 120, Level = LogLevel.Warning,
        Message = "refused peer {Peer} for {User} from {Client}: {Reason}")]
    public static partial void PeerRefused(ILogger logger, IPEndPoint peer, string user, IPEndPoint client, string reason);
}
