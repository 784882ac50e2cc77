using System.Buffers.Binary;
using System.Net;
using NatKit.Net;
using NatKit.Packets;
using NatKit.Tunnel.Link;

namespace NatKit.Tunnel.Server;

/// <summary>One client's live session as the server's table shows it.</summary>
public sealed record TunnelSessionInfo(Guid Id, string InsideAddress, string ClientAddress, string? Remote,
    DateTimeOffset ConnectedAt, long PacketsIn, long BytesIn, long PacketsOut, long BytesOut, long Spoofed,
    long RateLimited, long OutboundDropped, int Reconnects);

/// <summary>
/// A connected client on the server: its link, its inner address (the one the NAT engine sees, unique per session)
/// and the address the client itself uses (the same, unless the server lets clients choose theirs), and its
/// anti-spoofing and rate limit, applied on the link's receive loop before a packet reaches the data plane.
/// </summary>
internal sealed class TunnelSession
{
    private readonly TimeProvider _time;
    private readonly Lock _bucketGate = new();
    private TokenBucket _bucket;
    private long _spoofed;
    private long _rateLimited;

    public TunnelSession(Guid id, Ipv4Address insideAddress, Ipv4Address clientAddress, IPEndPoint? remote,
        TunnelLink link, int packetsPerSecond, TimeProvider time, int reconnects)
    {
        Id = id;
        InsideAddress = insideAddress;
        ClientAddress = clientAddress;
        Remote = remote;
        Link = link;
        _time = time;
        ConnectedAt = time.GetUtcNow();
        Reconnects = reconnects;
        _bucket = new TokenBucket(packetsPerSecond, packetsPerSecond, time.TimestampFrequency, time.GetTimestamp());
        link.Admit = Admit;
    }

    public Guid Id { get; }

    /// <summary>The address the NAT engine sees (unique per session).</summary>
    public Ipv4Address InsideAddress { get; }

    /// <summary>The address the client uses; different from <see cref="InsideAddress"/> only when clients choose.</summary>
    public Ipv4Address ClientAddress { get; }

    public IPEndPoint? Remote { get; }

    public TunnelLink Link { get; }

    public DateTimeOffset ConnectedAt { get; }

    public int Reconnects { get; }

    /// <summary>Set by the hub while this session has packets waiting to be sent after the current batch.</summary>
    public bool Touched { get; set; }

    public long Spoofed => Volatile.Read(ref _spoofed);

    public long RateLimited => Volatile.Read(ref _rateLimited);

    private bool Translated => InsideAddress != ClientAddress;

    public TunnelSessionInfo Info()
    {
        var s = Link.Stats;
        return new TunnelSessionInfo(Id, InsideAddress.ToString(), ClientAddress.ToString(), Remote?.ToString(),
            ConnectedAt, s.PacketsIn, s.BytesIn, s.PacketsOut, s.BytesOut, Spoofed, RateLimited, s.OutboundDropped,
            Reconnects);
    }

    /// <summary>
    /// The receive loop's gate: an IPv4 packet whose inner source is the session's address (anything else is dropped
    /// and counted: anti-spoofing), within the session's packet rate. Moved to the session's inside address when the
    /// client uses its own.
    /// </summary>
    private bool Admit(Span<byte> packet)
    {
        if (packet.Length < Ipv4Field.MinHeaderLength || packet[0] >> 4 != 4 ||
            BinaryPrimitives.ReadUInt32BigEndian(packet[Ipv4Field.Source..]) != ClientAddress.Value)
        {
            Interlocked.Increment(ref _spoofed);
            return false;
        }

        lock (_bucketGate)
        {
            if (!_bucket.TryTake(1, _time.GetTimestamp()))
            {
                _rateLimited++;
                return false;
            }
        }

        if (Translated)
        {
            InnerAddressTranslation.RewriteSource(packet, InsideAddress);
        }

        return true;
    }

    /// <summary>Before a packet leaves for the client: back to the client's own address when it uses one.</summary>
    public void PrepareOutbound(Span<byte> packet)
    {
        if (Translated)
        {
            InnerAddressTranslation.RewriteDestination(packet, ClientAddress);
        }
    }
}
