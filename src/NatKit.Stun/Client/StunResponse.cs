using System.Net;
using System.Text;

namespace NatKit.Stun.Client;

/// <summary>A response the client matched to its request, with the attributes discovery needs pulled out.</summary>
public sealed record StunResponse
{
    public required StunMessage Message { get; init; }

    /// <summary>Who sent the response (differs from the server's primary endpoint after CHANGE-REQUEST).</summary>
    public required IPEndPoint Source { get; init; }

    /// <summary>Time from the first send to the response (including retransmissions).</summary>
    public required TimeSpan RoundTrip { get; init; }

    public bool IsSuccess => Message.Class == StunClass.SuccessResponse;

    /// <summary>XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (older servers).</summary>
    public IPEndPoint? MappedAddress { get; init; }

    public IPEndPoint? ResponseOrigin { get; init; }

    public IPEndPoint? OtherAddress { get; init; }

    public int ErrorCode { get; init; }

    public string? ErrorReason { get; init; }

    public string? Software { get; init; }

    /// <summary>Pulls the typed fields out of a checked response.</summary>
    internal static StunResponse From(StunMessageReader reader, IPEndPoint source, TimeSpan roundTrip)
    {
        IPEndPoint? mapped = null;
        if (reader.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var x))
        {
            mapped = x.ToEndPoint();
        }
        else if (reader.TryGetAddress(StunAttributeType.MappedAddress, out var m))
        {
            mapped = m.ToEndPoint();
        }

        var origin = reader.TryGetAddress(StunAttributeType.ResponseOrigin, out var o) ? o.ToEndPoint() : null;
        var other = reader.TryGetAddress(StunAttributeType.OtherAddress, out var a) ? a.ToEndPoint()
            : reader.TryGetAddress(StunAttributeType.ChangedAddress, out var c) ? c.ToEndPoint() : null;
        var code = 0;
        string? reason = null;
        if (reader.TryGetErrorCode(out var ec, out var r))
        {
            code = ec;
            reason = Encoding.UTF8.GetString(r);
        }

        return new StunResponse
        {
            Message = StunMessage.Parse(reader.Message)!,
            Source = source,
            RoundTrip = roundTrip,
            MappedAddress = mapped,
            ResponseOrigin = origin,
            OtherAddress = other,
            ErrorCode = code,
            ErrorReason = reason,
            Software = reader.TryGet(StunAttributeType.Software, out var s) ? Encoding.UTF8.GetString(s) : null,
        };
    }

    /// <summary>The value of an attribute as text (REALM, NONCE ...), or null.</summary>
    public string? GetString(ushort type)
    {
        foreach (var a in Message.Attributes)
        {
            if (a.Type == type)
            {
                return Encoding.UTF8.GetString(a.Value);
            }
        }

        return null;
    }
}
