using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Text;
using NatKit.Packets;

namespace NatKit.Tunnel.Framing;

/// <summary>What a side of the tunnel can do beyond plain packets.</summary>
[Flags]
public enum TunnelFeatures : byte
{
    None = 0,

    /// <summary>Takes <see cref="TunnelMessageKind.Offload"/> messages: GSO super-packets and partial checksums,
    /// as a TUN device with virtio-net offloads reads them. Used only when both sides say so.</summary>
    Offloads = 0x01,
}

/// <summary>
/// The client's first message: the protocol version, what it can take, a session id that stays the same across its
/// reconnects (so the server can give it back its address and flows), the inner address it asks for (0.0.0.0: any),
/// and its token.
/// </summary>
/// <remarks>Layout: type 0x01, version, features, a zero byte, session id (16), requested address (4), token length
/// (2), token (UTF-8, at most <see cref="MaxTokenBytes"/>). Nothing may follow the token.</remarks>
public sealed record TunnelHello(byte Version, TunnelFeatures Features, Guid SessionId, Ipv4Address RequestedAddress,
    string Token)
{
    /// <summary>Longest token, in UTF-8 bytes.</summary>
    public const int MaxTokenBytes = 1024;

    private const int Fixed = 26;

    /// <summary>Bytes this hello takes on the wire.</summary>
    public int Length => Fixed + Encoding.UTF8.GetByteCount(Token);

    /// <summary>Writes the message; returns its length.</summary>
    /// <exception cref="ArgumentException">The token is longer than <see cref="MaxTokenBytes"/>.</exception>
    public int Write(Span<byte> destination)
    {
        var tokenBytes = Encoding.UTF8.GetByteCount(Token);
        if (tokenBytes > MaxTokenBytes)
        {
            throw new ArgumentException($"the token is {tokenBytes} bytes; at most {MaxTokenBytes} are allowed");
        }

        destination[0] = TunnelMessage.HelloType;
        destination[1] = Version;
        destination[2] = (byte)Features;
        destination[3] = 0;
        _ = SessionId.TryWriteBytes(destination[4..20], bigEndian: true, out _);
        RequestedAddress.Write(destination[20..]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[24..], (ushort)tokenBytes);
        return Fixed + Encoding.UTF8.GetBytes(Token, destination[Fixed..]);
    }

    /// <summary>Parses a hello; on failure <paramref name="error"/> says what is wrong, in one sentence.</summary>
    public static bool TryParse(ReadOnlySpan<byte> message, [NotNullWhen(true)] out TunnelHello? hello,
        [NotNullWhen(false)] out string? error)
    {
        hello = null;
        if (message.Length < Fixed || message[0] != TunnelMessage.HelloType)
        {
            error = $"a hello is at least {Fixed} bytes starting with 0x01; got {message.Length} bytes";
            return false;
        }

        var tokenLength = BinaryPrimitives.ReadUInt16BigEndian(message[24..]);
        if (tokenLength > MaxTokenBytes)
        {
            error = $"the hello's token is {tokenLength} bytes; at most {MaxTokenBytes} are allowed";
            return false;
        }

        if (message.Length != Fixed + tokenLength)
        {
            error = $"the hello says its token is {tokenLength} bytes but {message.Length - Fixed} follow";
            return false;
        }

        string token;
        try
        {
            token = Strict.GetString(message[Fixed..]);
        }
        catch (DecoderFallbackException)
        {
            error = "the hello's token is not UTF-8";
            return false;
        }

        hello = new TunnelHello(message[1], (TunnelFeatures)message[2], new Guid(message[4..20], bigEndian: true),
            Ipv4Address.Read(message[20..]), token);
        error = null;
        return true;
    }

    internal static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The token stays out of logs.</summary>
    public override string ToString() =>
        $"hello v{Version} {Features} session {SessionId} asks {RequestedAddress} (token of {Encoding.UTF8.GetByteCount(Token)} bytes)";
}
