using System.Net;
using NatKit.Net;

namespace NatKit.Utp;

/// <summary>What a datagram arriving on a shared UDP socket is.</summary>
public enum DatagramKind
{
    /// <summary>A uTP packet: handed to the uTP endpoint.</summary>
    Utp,

    /// <summary>A STUN message (RFC 8489 magic cookie and length): handed to the owner.</summary>
    Stun,

    /// <summary>Anything from a registered TURN server (ChannelData 0x40-0x7F, or its STUN): handed to the owner.</summary>
    TurnServer,

    /// <summary>Anything else (hole-punching probes, garbage): handed to the owner.</summary>
    Other,
}

/// <summary>
/// Sorts datagrams on a UDP socket shared by uTP, STUN, TURN and hole punching. The first byte alone cannot do it:
/// a uTP SYN starts with 0x41 (type 4, version 1), which is inside TURN ChannelData's 0x40-0x7F, and a uTP
/// DATA packet starts with 0x01 like a STUN success response. The rule, in order:
/// <list type="number">
/// <item>from a registered TURN server address: <see cref="DatagramKind.TurnServer"/> (a TURN server never speaks
/// uTP to us, so ChannelData and its STUN both go to the owner);</item>
/// <item>top two bits 00, the STUN magic cookie 0x2112A442 at bytes 4-7 and a length field that matches the
/// datagram: <see cref="DatagramKind.Stun"/>;</item>
/// <item>a well-formed uTP version-1 header (<see cref="UtpHeader.TryParse"/>): <see cref="DatagramKind.Utp"/>;</item>
/// <item>anything else: <see cref="DatagramKind.Other"/>.</item>
/// </list>
/// </summary>
public sealed class DatagramClassifier
{
    /// <summary>The STUN magic cookie (RFC 8489 section 5).</summary>
    public const uint StunMagicCookie = DatagramShape.StunMagicCookie;

    private readonly Lock _gate = new();
    private volatile IPEndPoint[] _turnServers = [];

    /// <summary>Marks <paramref name="server"/> as a TURN server: everything it sends goes to the owner.</summary>
    public void AddTurnServer(IPEndPoint server)
    {
        ArgumentNullException.ThrowIfNull(server);
        lock (_gate)
        {
            var current = _turnServers;
            if (Array.IndexOf(current, server) >= 0)
            {
                return;
            }

            var next = new IPEndPoint[current.Length + 1];
            current.CopyTo(next, 0);
            next[^1] = server;
            _turnServers = next;
        }
    }

    public void RemoveTurnServer(IPEndPoint server)
    {
        ArgumentNullException.ThrowIfNull(server);
        lock (_gate)
        {
            var current = _turnServers;
            var i = Array.IndexOf(current, server);
            if (i < 0)
            {
                return;
            }

            var next = new IPEndPoint[current.Length - 1];
            Array.Copy(current, 0, next, 0, i);
            Array.Copy(current, i + 1, next, i, current.Length - i - 1);
            _turnServers = next;
        }
    }

    /// <summary>Classifies one datagram by its source and its bytes. Never throws.</summary>
    public DatagramKind Classify(ReadOnlySpan<byte> datagram, IPEndPoint source) =>
        Classify(datagram, source, out _);

    /// <summary>As <see cref="Classify(ReadOnlySpan{byte}, IPEndPoint)"/>, and for
    /// <see cref="DatagramKind.Utp"/> the header it parsed, so the receive path parses it once.</summary>
    internal DatagramKind Classify(ReadOnlySpan<byte> datagram, IPEndPoint source, out UtpHeader header)
    {
        header = default;
        var servers = _turnServers;
        for (var i = 0; i < servers.Length; i++)
        {
            if (servers[i].Equals(source))
            {
                return DatagramKind.TurnServer;
            }
        }

        if (IsStun(datagram))
        {
            return DatagramKind.Stun;
        }

        return UtpHeader.TryParse(datagram, out header) ? DatagramKind.Utp : DatagramKind.Other;
    }

    /// <summary>True when the bytes look like a STUN message: top two bits zero, the magic cookie, and a message
    /// length (a multiple of 4) that accounts for the rest of the datagram (<see cref="DatagramShape.IsStun"/>).</summary>
    public static bool IsStun(ReadOnlySpan<byte> datagram) => DatagramShape.IsStun(datagram);
}
