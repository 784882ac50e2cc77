using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace NatKit.Tunnel.Framing;

/// <summary>Why a side ends or refuses a session. Stable numbers: they are on the wire.</summary>
public enum TunnelCode : byte
{
    None = 0,

    /// <summary>The hello's version is not one the server speaks.</summary>
    VersionUnsupported = 1,

    /// <summary>The token is wrong.</summary>
    Unauthorized = 2,

    /// <summary>No inner address is free.</summary>
    PoolExhausted = 3,

    /// <summary>The server holds as many sessions as it may.</summary>
    ServerFull = 4,

    /// <summary>The first message was not a well-formed hello, or a later one broke the framing.</summary>
    Malformed = 5,

    /// <summary>The server is stopping.</summary>
    ShuttingDown = 6,

    /// <summary>The requested inner address is not allowed.</summary>
    AddressRefused = 7,

    /// <summary>A newer connection of the same session took over.</summary>
    Replaced = 8,

    /// <summary>Nothing came from the other side for too long.</summary>
    Timeout = 9,
}

/// <summary>
/// A refusal (type 0x03, the server's answer to a hello it will not serve) or a goodbye (type 0x07, either side, before
/// it closes): a code and a sentence for the log.
/// </summary>
/// <remarks>Layout: type, code, reason length (2), reason (UTF-8, at most <see cref="MaxReasonBytes"/>).</remarks>
public sealed record TunnelNotice(bool IsRefusal, TunnelCode Code, string Reason)
{
    /// <summary>Longest reason, in UTF-8 bytes (longer ones are cut when written).</summary>
    public const int MaxReasonBytes = 512;

    private const int Fixed = 4;

    /// <summary>The most bytes any notice takes.</summary>
    public const int MaxLength = Fixed + MaxReasonBytes;

    /// <summary>Writes the message (a reason over <see cref="MaxReasonBytes"/> is cut at a character boundary);
    /// returns its length.</summary>
    public int Write(Span<byte> destination)
    {
        destination[0] = IsRefusal ? TunnelMessage.RefusedType : TunnelMessage.ByeType;
        destination[1] = (byte)Code;
        var room = destination.Slice(Fixed, Math.Min(MaxReasonBytes, destination.Length - Fixed));
        var encoder = Encoding.UTF8.GetEncoder();
        encoder.Convert(Reason, room, flush: true, out _, out var written, out _);
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)written);
        return Fixed + written;
    }

    /// <summary>Parses a refusal or goodbye; on failure <paramref name="error"/> says what is wrong.</summary>
    public static bool TryParse(ReadOnlySpan<byte> message, [NotNullWhen(true)] out TunnelNotice? notice,
        [NotNullWhen(false)] out string? error)
    {
        notice = null;
        if (message.Length < Fixed || (message[0] != TunnelMessage.RefusedType && message[0] != TunnelMessage.ByeType))
        {
            error = $"a refusal or goodbye is at least {Fixed} bytes starting with 0x03 or 0x07; got {message.Length} bytes";
            return false;
        }

        var length = BinaryPrimitives.ReadUInt16BigEndian(message[2..]);
        if (length > MaxReasonBytes || message.Length != Fixed + length)
        {
            error = $"the notice says its reason is {length} bytes (at most {MaxReasonBytes}) but {message.Length - Fixed} follow";
            return false;
        }

        string reason;
        try
        {
            reason = TunnelHello.Strict.GetString(message[Fixed..]);
        }
        catch (DecoderFallbackException)
        {
            error = "the notice's reason is not UTF-8";
            return false;
        }

        notice = new TunnelNotice(message[0] == TunnelMessage.RefusedType, (TunnelCode)message[1], reason);
        error = null;
        return true;
    }
}
