using System.Buffers.Binary;
using NatKit.Packets;

namespace NatKit.Tunnel.Framing;

/// <summary>What a binary WebSocket message of the tunnel carries.</summary>
public enum TunnelMessageKind
{
    /// <summary>Empty, or a first byte that is neither an IP version nor a control type.</summary>
    Malformed,

    /// <summary>A whole IPv4 packet (first byte 0x4_).</summary>
    Ipv4Packet,

    /// <summary>A whole IPv6 packet (first byte 0x6_).</summary>
    Ipv6Packet,

    /// <summary>The client's first message: version, features, session id, requested address, token.</summary>
    Hello,

    /// <summary>The server's answer to a good hello: address, prefix, gateway, MTU, keepalive, routes.</summary>
    Welcome,

    /// <summary>The server's answer to a hello it refuses: a code and a sentence. The connection then closes.</summary>
    Refused,

    /// <summary>A keepalive probe: eight bytes the other side sends back in a <see cref="Pong"/>.</summary>
    Ping,

    /// <summary>The answer to a <see cref="Ping"/>.</summary>
    Pong,

    /// <summary>An IP packet with its offload state (a GSO super-packet, a partial checksum), when both sides said
    /// they take offloads.</summary>
    Offload,

    /// <summary>The sender is going away (server stopping, session replaced): a code and a sentence.</summary>
    Bye,

    /// <summary>A control type this version does not know: ignored, so later versions can add messages.</summary>
    Unknown,
}

/// <summary>
/// The tunnel's framing over binary WebSocket messages: a message whose first byte's high nibble is 4 or 6 is one
/// whole IP packet, nothing else in it; a first byte 0x01-0x3F is a control message of that type. Text messages are
/// not used. Every multi-byte field is big-endian (the offload header excepted: it is virtio-net's own
/// little-endian layout, copied as the TUN device reads and writes it).
/// </summary>
public static class TunnelMessage
{
    /// <summary>The protocol version this code speaks.</summary>
    public const byte Version = 1;

    /// <summary>The WebSocket subprotocol name (Sec-WebSocket-Protocol) the client asks for.</summary>
    public const string SubProtocol = "natkit-tunnel.v1";

    public const byte HelloType = 0x01;
    public const byte WelcomeType = 0x02;
    public const byte RefusedType = 0x03;
    public const byte PingType = 0x04;
    public const byte PongType = 0x05;
    public const byte OffloadType = 0x06;
    public const byte ByeType = 0x07;

    /// <summary>Largest control type; 0x08 up to it are <see cref="TunnelMessageKind.Unknown"/>.</summary>
    public const byte LastControlType = 0x3F;

    /// <summary>Bytes before the packet in an offload message: the type and the virtio-net header.</summary>
    public const int OffloadPrefix = 1 + VirtioNetHeader.Size;

    /// <summary>The largest message: an offload prefix and a 64 KiB packet.</summary>
    public const int MaxMessage = OffloadPrefix + 65535;

    /// <summary>Length of a ping or pong message.</summary>
    public const int PingLength = 9;

    /// <summary>What <paramref name="message"/> is, from its first byte (nothing else is read).</summary>
    public static TunnelMessageKind Classify(ReadOnlySpan<byte> message)
    {
        if (message.IsEmpty)
        {
            return TunnelMessageKind.Malformed;
        }

        var first = message[0];
        return (first >> 4) switch
        {
            4 => TunnelMessageKind.Ipv4Packet,
            6 => TunnelMessageKind.Ipv6Packet,
            _ => first switch
            {
                HelloType => TunnelMessageKind.Hello,
                WelcomeType => TunnelMessageKind.Welcome,
                RefusedType => TunnelMessageKind.Refused,
                PingType => TunnelMessageKind.Ping,
                PongType => TunnelMessageKind.Pong,
                OffloadType => TunnelMessageKind.Offload,
                ByeType => TunnelMessageKind.Bye,
                > 0 and <= LastControlType => TunnelMessageKind.Unknown,
                _ => TunnelMessageKind.Malformed,
            },
        };
    }

    /// <summary>Writes a ping (or, with <paramref name="pong"/>, its answer) carrying <paramref name="payload"/>.
    /// Returns <see cref="PingLength"/>.</summary>
    public static int WritePing(Span<byte> destination, ulong payload, bool pong = false)
    {
        destination[0] = pong ? PongType : PingType;
        BinaryPrimitives.WriteUInt64BigEndian(destination[1..], payload);
        return PingLength;
    }

    /// <summary>Reads a ping's or pong's payload; false when the message is not exactly a ping or pong.</summary>
    public static bool TryReadPing(ReadOnlySpan<byte> message, out ulong payload)
    {
        payload = 0;
        if (message.Length != PingLength || (message[0] != PingType && message[0] != PongType))
        {
            return false;
        }

        payload = BinaryPrimitives.ReadUInt64BigEndian(message[1..]);
        return true;
    }
}
