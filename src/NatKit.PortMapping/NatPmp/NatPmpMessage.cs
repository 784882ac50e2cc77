using System.Buffers.Binary;
using NatKit.Packets;

namespace NatKit.PortMapping.NatPmp;

/// <summary>NAT-PMP opcodes (RFC 6886 section 3); a response's opcode is the request's plus 128.</summary>
public enum NatPmpOpcode : byte
{
    /// <summary>Section 3.2: what is the external address?</summary>
    ExternalAddress = 0,

    /// <summary>Section 3.3: map a UDP port.</summary>
    MapUdp = 1,

    /// <summary>Section 3.3: map a TCP port.</summary>
    MapTcp = 2,
}

/// <summary>NAT-PMP result codes (RFC 6886 section 3.5).</summary>
public enum NatPmpResult : ushort
{
    Success = 0,
    UnsupportedVersion = 1,

    /// <summary>Not authorized or refused (e.g. the box has port mapping turned off).</summary>
    NotAuthorized = 2,
    NetworkFailure = 3,
    OutOfResources = 4,
    UnsupportedOpcode = 5,
}

/// <summary>
/// A NAT-PMP request as sent to port 5351 (RFC 6886 sections 3.2 and 3.3), a view over its bytes. Version and
/// opcode are in the first two bytes of every request; a mapping request has 12 bytes. <see cref="TryParse"/> checks
/// the length its opcode needs before any field is read, and never throws.
/// </summary>
public readonly ref struct NatPmpRequest
{
    /// <summary>The one version NAT-PMP has.</summary>
    public const byte Version0 = 0;

    /// <summary>Bytes of an external address request.</summary>
    public const int ExternalAddressLength = 2;

    /// <summary>Bytes of a mapping request.</summary>
    public const int MappingLength = 12;

    /// <summary>The server's port (RFC 6886 section 3.1).</summary>
    public const int ServerPort = 5351;

    /// <summary>The client's port for announcements (section 3.2.1: sent to 224.0.0.1:5350).</summary>
    public const int AnnouncePort = 5350;

    private NatPmpRequest(ReadOnlySpan<byte> buffer) => Buffer = buffer;

    /// <summary>The request's bytes.</summary>
    public ReadOnlySpan<byte> Buffer { get; }

    public byte Version => Buffer[0];

    public byte Opcode => Buffer[1];

    /// <summary>True for opcodes 1 and 2, whose fields follow.</summary>
    public bool IsMapping => Opcode is (byte)NatPmpOpcode.MapUdp or (byte)NatPmpOpcode.MapTcp;

    /// <summary>Must be 0 (section 3.3).</summary>
    public ushort Reserved => BinaryPrimitives.ReadUInt16BigEndian(Buffer[2..]);

    public ushort InternalPort => BinaryPrimitives.ReadUInt16BigEndian(Buffer[4..]);

    public ushort SuggestedExternalPort => BinaryPrimitives.ReadUInt16BigEndian(Buffer[6..]);

    /// <summary>Seconds; 0 deletes (section 3.4).</summary>
    public uint RequestedLifetime => BinaryPrimitives.ReadUInt32BigEndian(Buffer[8..]);

    /// <summary>Views <paramref name="buffer"/> as a request: at least version and opcode, and 12 bytes when the
    /// opcode (in version 0) is a mapping. A request with another version or opcode parses (so the server can answer
    /// "unsupported"); its mapping fields may not be read.</summary>
    public static bool TryParse(ReadOnlySpan<byte> buffer, out NatPmpRequest request)
    {
        request = default;
        if (buffer.Length < ExternalAddressLength) return false;
        if (buffer[0] == Version0 && buffer[1] is (byte)NatPmpOpcode.MapUdp or (byte)NatPmpOpcode.MapTcp && buffer.Length < MappingLength) return false;
        request = new NatPmpRequest(buffer);
        return true;
    }

    /// <summary>Writes an external address request; returns 2.</summary>
    public static int WriteExternalAddressRequest(Span<byte> destination)
    {
        destination[0] = Version0;
        destination[1] = (byte)NatPmpOpcode.ExternalAddress;
        return ExternalAddressLength;
    }

    /// <summary>Writes a mapping request; returns 12.</summary>
    public static int WriteMappingRequest(Span<byte> destination, NatPmpOpcode opcode, ushort internalPort, ushort suggestedExternalPort, uint lifetime)
    {
        var d = destination[..MappingLength];
        d[0] = Version0;
        d[1] = (byte)opcode;
        BinaryPrimitives.WriteUInt16BigEndian(d[2..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(d[4..], internalPort);
        BinaryPrimitives.WriteUInt16BigEndian(d[6..], suggestedExternalPort);
        BinaryPrimitives.WriteUInt32BigEndian(d[8..], lifetime);
        return MappingLength;
    }

    /// <summary>The IP protocol a mapping opcode names.</summary>
    public static IpProtocol ProtocolOf(NatPmpOpcode opcode) => opcode == NatPmpOpcode.MapTcp ? IpProtocol.Tcp : IpProtocol.Udp;
}

/// <summary>
/// A NAT-PMP response (RFC 6886 sections 3.2, 3.3, 3.5), a view over its bytes: 8 bytes of header (version, opcode
/// + 128, result, seconds since the epoch), then 4 bytes of external address (opcode 128) or 8 bytes of ports and
/// lifetime (129, 130). Error responses to unknown versions or opcodes are the 8-byte header alone.
/// </summary>
public readonly ref struct NatPmpResponse
{
    /// <summary>Bytes of the common header.</summary>
    public const int HeaderLength = 8;

    /// <summary>Bytes of an external address response.</summary>
    public const int ExternalAddressLength = 12;

    /// <summary>Bytes of a mapping response.</summary>
    public const int MappingLength = 16;

    private NatPmpResponse(ReadOnlySpan<byte> buffer) => Buffer = buffer;

    public ReadOnlySpan<byte> Buffer { get; }

    public byte Version => Buffer[0];

    /// <summary>The request's opcode plus 128.</summary>
    public byte Opcode => Buffer[1];

    /// <summary>The opcode of the request this answers.</summary>
    public byte RequestOpcode => (byte)(Buffer[1] - 128);

    public NatPmpResult Result => (NatPmpResult)BinaryPrimitives.ReadUInt16BigEndian(Buffer[2..]);

    /// <summary>Seconds since the server's epoch began (start, or loss of its mappings).</summary>
    public uint Epoch => BinaryPrimitives.ReadUInt32BigEndian(Buffer[4..]);

    /// <summary>True when the external address field is present (opcode 128, 12 bytes).</summary>
    public bool HasExternalAddress => Opcode == 128 && Buffer.Length >= ExternalAddressLength;

    /// <summary>True when the mapping fields are present (opcode 129 or 130, 16 bytes).</summary>
    public bool HasMapping => Opcode is 129 or 130 && Buffer.Length >= MappingLength;

    /// <summary>Only when <see cref="HasExternalAddress"/>.</summary>
    public Ipv4Address ExternalAddress => Ipv4Address.Read(Buffer[8..]);

    /// <summary>Only when <see cref="HasMapping"/>.</summary>
    public ushort InternalPort => BinaryPrimitives.ReadUInt16BigEndian(Buffer[8..]);

    /// <summary>Only when <see cref="HasMapping"/>.</summary>
    public ushort MappedExternalPort => BinaryPrimitives.ReadUInt16BigEndian(Buffer[10..]);

    /// <summary>Only when <see cref="HasMapping"/>: seconds granted.</summary>
    public uint Lifetime => BinaryPrimitives.ReadUInt32BigEndian(Buffer[12..]);

    /// <summary>Views <paramref name="buffer"/> as a response: version 0, an opcode of 128 or more, the 8-byte header,
    /// and the full length its opcode has when the result is success.</summary>
    public static bool TryParse(ReadOnlySpan<byte> buffer, out NatPmpResponse response)
    {
        response = default;
        if (buffer.Length < HeaderLength || buffer[0] != NatPmpRequest.Version0 || buffer[1] < 128) return false;
        var success = buffer[2] == 0 && buffer[3] == 0;
        if (success && buffer[1] == 128 && buffer.Length < ExternalAddressLength) return false;
        if (success && buffer[1] is 129 or 130 && buffer.Length < MappingLength) return false;
        response = new NatPmpResponse(buffer);
        return true;
    }

    /// <summary>Writes the 8-byte header alone (unsupported version or opcode); returns 8.</summary>
    public static int WriteHeader(Span<byte> destination, byte requestOpcode, NatPmpResult result, uint epoch)
    {
        var d = destination[..HeaderLength];
        d[0] = NatPmpRequest.Version0;
        d[1] = (byte)(requestOpcode | 128);
        BinaryPrimitives.WriteUInt16BigEndian(d[2..], (ushort)result);
        BinaryPrimitives.WriteUInt32BigEndian(d[4..], epoch);
        return HeaderLength;
    }

    /// <summary>Writes an external address response (also the announcement); returns 12.</summary>
    public static int WriteExternalAddress(Span<byte> destination, NatPmpResult result, uint epoch, Ipv4Address address)
    {
        WriteHeader(destination[..ExternalAddressLength], (byte)NatPmpOpcode.ExternalAddress, result, epoch);
        address.Write(destination[8..]);
        return ExternalAddressLength;
    }

    /// <summary>Writes a mapping response; returns 16.</summary>
    public static int WriteMapping(Span<byte> destination, NatPmpOpcode opcode, NatPmpResult result, uint epoch, ushort internalPort,
        ushort externalPort, uint lifetime)
    {
        WriteHeader(destination[..MappingLength], (byte)opcode, result, epoch);
        BinaryPrimitives.WriteUInt16BigEndian(destination[8..], internalPort);
        BinaryPrimitives.WriteUInt16BigEndian(destination[10..], externalPort);
        BinaryPrimitives.WriteUInt32BigEndian(destination[12..], lifetime);
        return MappingLength;
    }
}
