using System.Buffers.Binary;
using NatKit.Packets;

namespace NatKit.PortMapping.Pcp;

/// <summary>PCP opcodes (RFC 6887 section 19.2).</summary>
public enum PcpOpcode : byte
{
    /// <summary>Section 14.1: "are you there, and did you restart?"; also sent unsolicited after a restart.</summary>
    Announce = 0,

    /// <summary>Section 11: an inbound mapping anyone may reach (or filtered by FILTER).</summary>
    Map = 1,

    /// <summary>Section 12: an outbound mapping toward one remote peer.</summary>
    Peer = 2,
}

/// <summary>PCP result codes (RFC 6887 section 7.4).</summary>
public enum PcpResult : byte
{
    Success = 0,
    UnsupportedVersion = 1,
    NotAuthorized = 2,
    MalformedRequest = 3,
    UnsupportedOpcode = 4,
    UnsupportedOption = 5,
    MalformedOption = 6,
    NetworkFailure = 7,
    NoResources = 8,
    UnsupportedProtocol = 9,
    UserExceededQuota = 10,
    CannotProvideExternal = 11,
    AddressMismatch = 12,
    ExcessiveRemotePeers = 13,
}

/// <summary>PCP options (RFC 6887 section 13); codes 0-127 must be understood, 128-255 may be ignored.</summary>
public enum PcpOptionCode : byte
{
    /// <summary>Section 13.1: the request is for another host (16 bytes: its address).</summary>
    ThirdParty = 1,

    /// <summary>Section 13.2: fail rather than assign another external port or address (no data).</summary>
    PreferFailure = 2,

    /// <summary>Section 13.3: only these remote peers may use the mapping (20 bytes).</summary>
    Filter = 3,
}

/// <summary>Sizes and addresses shared by PCP requests and responses (RFC 6887 section 7).</summary>
public static class Pcp
{
    /// <summary>The version this codec speaks.</summary>
    public const byte Version2 = 2;

    /// <summary>The common header (request and response).</summary>
    public const int HeaderLength = 24;

    /// <summary>Section 7: the largest PCP message.</summary>
    public const int MaxMessageLength = 1100;

    /// <summary>MAP opcode data (nonce, protocol, ports, external address).</summary>
    public const int MapDataLength = 36;

    /// <summary>PEER opcode data: MAP's plus the remote peer's port and address.</summary>
    public const int PeerDataLength = 56;

    /// <summary>Bytes of a PCP option header (code, reserved, length).</summary>
    public const int OptionHeaderLength = 4;

    /// <summary>Bytes of a THIRD_PARTY option's data.</summary>
    public const int ThirdPartyLength = 16;

    /// <summary>Bytes of a FILTER option's data.</summary>
    public const int FilterLength = 20;

    /// <summary>Bytes of the mapping nonce (section 11.1).</summary>
    public const int NonceLength = 12;

    /// <summary>The server's port, shared with NAT-PMP (section 19.1).</summary>
    public const int ServerPort = 5351;

    /// <summary>Clients listen for unsolicited responses (ANNOUNCE) on this port (section 8.1).</summary>
    public const int ClientPort = 5350;

    /// <summary>An IPv4 address as PCP carries it: IPv4-mapped IPv6 (::ffff:a.b.c.d, section 5).</summary>
    public static Ipv6Address Mapped(Ipv4Address address) => new(0, 0xFFFF_0000_0000UL | address.Value);

    /// <summary>The IPv4 address inside an IPv4-mapped IPv6 address, or null for a real IPv6 address.</summary>
    public static Ipv4Address? Unmapped(Ipv6Address address) => address.IsIpv4Mapped ? new Ipv4Address((uint)address.Low) : null;

    /// <summary>The all-zeros address, as PCP means "any" (::ffff:0.0.0.0 for IPv4, section 11.1).</summary>
    public static readonly Ipv6Address AnyIpv4 = Mapped(Ipv4Address.Any);
}

/// <summary>
/// A PCP request (RFC 6887 section 7.1), a view over its bytes: a 24-byte header (version, R=0 and opcode, lifetime,
/// client address), opcode data, then options. <see cref="TryParse"/> takes only what a server may answer at all;
/// <see cref="PcpRequestValidation"/> says which result a bad one earns. Never throws.
/// </summary>
public readonly ref struct PcpRequest
{
    private PcpRequest(ReadOnlySpan<byte> buffer) => Buffer = buffer;

    public ReadOnlySpan<byte> Buffer { get; }

    public byte Version => Buffer[0];

    /// <summary>The R bit: set in responses, which a server drops.</summary>
    public bool IsResponse => (Buffer[1] & 0x80) != 0;

    public byte Opcode => (byte)(Buffer[1] & 0x7F);

    /// <summary>Seconds asked for; 0 deletes.</summary>
    public uint Lifetime => BinaryPrimitives.ReadUInt32BigEndian(Buffer[4..]);

    /// <summary>The source address as the client saw it (checked against the packet's, section 8.3).</summary>
    public Ipv6Address ClientAddress => Ipv6Address.Read(Buffer[8..24]);

    /// <summary>Everything after the header: opcode data and options.</summary>
    public ReadOnlySpan<byte> Body => Buffer[Pcp.HeaderLength..];

    /// <summary>The opcode data of MAP when present.</summary>
    public bool TryGetMap(out PcpMapData map)
    {
        map = default;
        if (Opcode != (byte)PcpOpcode.Map || Body.Length < Pcp.MapDataLength) return false;
        map = new PcpMapData(Body[..Pcp.MapDataLength]);
        return true;
    }

    /// <summary>The opcode data of PEER when present.</summary>
    public bool TryGetPeer(out PcpPeerData peer)
    {
        peer = default;
        if (Opcode != (byte)PcpOpcode.Peer || Body.Length < Pcp.PeerDataLength) return false;
        peer = new PcpPeerData(Body[..Pcp.PeerDataLength]);
        return true;
    }

    /// <summary>Bytes of opcode data the opcode has (0 for ANNOUNCE and unknown opcodes).</summary>
    public int OpcodeDataLength => Opcode switch
    {
        (byte)PcpOpcode.Map => Pcp.MapDataLength,
        (byte)PcpOpcode.Peer => Pcp.PeerDataLength,
        _ => 0,
    };

    /// <summary>The options after the opcode data (empty when the body is shorter than the opcode data).</summary>
    public PcpOptionReader Options => new(Body.Length >= OpcodeDataLength ? Body[OpcodeDataLength..] : default);

    /// <summary>Views <paramref name="buffer"/> as a request when it has at least the version and opcode bytes. Every
    /// other check (length, version, R bit) is the caller's, through <see cref="PcpRequestValidation.Check"/>, so
    /// a server can answer a bad request with the right result; the header fields may be read only when
    /// <see cref="HasHeader"/>.</summary>
    public static bool TryParse(ReadOnlySpan<byte> buffer, out PcpRequest request)
    {
        request = default;
        if (buffer.Length < 2) return false; // section 8.3: silently dropped
        request = new PcpRequest(buffer);
        return true;
    }

    /// <summary>True when the 24-byte header is all there.</summary>
    public bool HasHeader => Buffer.Length >= Pcp.HeaderLength;

    /// <summary>Writes the request header; returns 24.</summary>
    public static int WriteHeader(Span<byte> destination, PcpOpcode opcode, uint lifetime, Ipv6Address clientAddress)
    {
        var d = destination[..Pcp.HeaderLength];
        d[0] = Pcp.Version2;
        d[1] = (byte)opcode;
        d[2] = 0;
        d[3] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(d[4..], lifetime);
        clientAddress.Write(d[8..]);
        return Pcp.HeaderLength;
    }
}

/// <summary>What a server must do with a PCP request before looking at its opcode (RFC 6887 section 8.3).</summary>
public static class PcpRequestValidation
{
    /// <summary>Null: drop silently (too short to answer, or a response). Otherwise the result to answer with:
    /// <see cref="PcpResult.Success"/> when the header, length and version are right.</summary>
    public static PcpResult? Check(in PcpRequest request)
    {
        var b = request.Buffer;
        if (b.Length < 2 || (b[1] & 0x80) != 0) return null;
        if (b[0] != Pcp.Version2) return PcpResult.UnsupportedVersion;
        if (b.Length < Pcp.HeaderLength || b.Length > Pcp.MaxMessageLength || b.Length % 4 != 0) return PcpResult.MalformedRequest;
        if (b.Length < Pcp.HeaderLength + request.OpcodeDataLength) return PcpResult.MalformedRequest;
        return PcpResult.Success;
    }
}

/// <summary>MAP opcode data (RFC 6887 section 11.1), in requests and responses alike.</summary>
public readonly ref struct PcpMapData
{
    internal PcpMapData(ReadOnlySpan<byte> buffer) => Buffer = buffer;

    public ReadOnlySpan<byte> Buffer { get; }

    /// <summary>The mapping nonce: who owns the mapping (12 bytes).</summary>
    public ReadOnlySpan<byte> Nonce => Buffer[..Pcp.NonceLength];

    /// <summary>IANA protocol number; 0 means all protocols.</summary>
    public byte Protocol => Buffer[12];

    public ushort InternalPort => BinaryPrimitives.ReadUInt16BigEndian(Buffer[16..]);

    /// <summary>Suggested (request) or assigned (response) external port.</summary>
    public ushort ExternalPort => BinaryPrimitives.ReadUInt16BigEndian(Buffer[18..]);

    /// <summary>Suggested (request) or assigned (response) external address.</summary>
    public Ipv6Address ExternalAddress => Ipv6Address.Read(Buffer[20..36]);

    /// <summary>Parses MAP data from its 36 bytes (false when shorter).</summary>
    public static bool TryParse(ReadOnlySpan<byte> buffer, out PcpMapData map)
    {
        map = default;
        if (buffer.Length < Pcp.MapDataLength) return false;
        map = new PcpMapData(buffer[..Pcp.MapDataLength]);
        return true;
    }

    /// <summary>Writes MAP data; returns 36.</summary>
    public static int Write(Span<byte> destination, ReadOnlySpan<byte> nonce, byte protocol, ushort internalPort, ushort externalPort,
        Ipv6Address externalAddress)
    {
        var d = destination[..Pcp.MapDataLength];
        nonce[..Pcp.NonceLength].CopyTo(d);
        d[12] = protocol;
        d[13] = d[14] = d[15] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(d[16..], internalPort);
        BinaryPrimitives.WriteUInt16BigEndian(d[18..], externalPort);
        externalAddress.Write(d[20..]);
        return Pcp.MapDataLength;
    }
}

/// <summary>PEER opcode data (RFC 6887 section 12.1): MAP's fields and the remote peer.</summary>
public readonly ref struct PcpPeerData
{
    internal PcpPeerData(ReadOnlySpan<byte> buffer) => Buffer = buffer;

    public ReadOnlySpan<byte> Buffer { get; }

    /// <summary>The MAP-shaped first 36 bytes.</summary>
    public PcpMapData Map => new(Buffer[..Pcp.MapDataLength]);

    public ushort RemotePort => BinaryPrimitives.ReadUInt16BigEndian(Buffer[36..]);

    public Ipv6Address RemoteAddress => Ipv6Address.Read(Buffer[40..56]);

    /// <summary>Parses PEER data from its 56 bytes (false when shorter).</summary>
    public static bool TryParse(ReadOnlySpan<byte> buffer, out PcpPeerData peer)
    {
        peer = default;
        if (buffer.Length < Pcp.PeerDataLength) return false;
        peer = new PcpPeerData(buffer[..Pcp.PeerDataLength]);
        return true;
    }

    /// <summary>Writes PEER data; returns 56.</summary>
    public static int Write(Span<byte> destination, ReadOnlySpan<byte> nonce, byte protocol, ushort internalPort, ushort externalPort,
        Ipv6Address externalAddress, ushort remotePort, Ipv6Address remoteAddress)
    {
        PcpMapData.Write(destination, nonce, protocol, internalPort, externalPort, externalAddress);
        var d = destination[..Pcp.PeerDataLength];
        BinaryPrimitives.WriteUInt16BigEndian(d[36..], remotePort);
        d[38] = d[39] = 0;
        remoteAddress.Write(d[40..]);
        return Pcp.PeerDataLength;
    }
}

/// <summary>
/// Walks PCP options (RFC 6887 section 7.3): code, reserved, a 16-bit data length, data padded to 4 bytes. An option
/// that runs past the end stops the walk and sets <see cref="IsMalformed"/>.
/// </summary>
public ref struct PcpOptionReader
{
    private readonly ReadOnlySpan<byte> _options;
    private int _offset;

    public PcpOptionReader(ReadOnlySpan<byte> options)
    {
        _options = options;
        _offset = 0;
        IsMalformed = false;
    }

    /// <summary>True when the walk stopped at an option that does not fit.</summary>
    public bool IsMalformed { get; private set; }

    /// <summary>Reads the next option; false at the end or when malformed.</summary>
    public bool TryReadNext(out byte code, out ReadOnlySpan<byte> data)
    {
        code = 0;
        data = default;
        if (_offset >= _options.Length) return false;
        if (_options.Length - _offset < Pcp.OptionHeaderLength)
        {
            return Malformed();
        }

        code = _options[_offset];
        int length = BinaryPrimitives.ReadUInt16BigEndian(_options[(_offset + 2)..]);
        var padded = (length + 3) & ~3;
        if (padded > _options.Length - _offset - Pcp.OptionHeaderLength)
        {
            return Malformed();
        }

        data = _options.Slice(_offset + Pcp.OptionHeaderLength, length);
        _offset += Pcp.OptionHeaderLength + padded;
        return true;
    }

    private bool Malformed()
    {
        IsMalformed = true;
        _offset = _options.Length;
        return false;
    }

    /// <summary>Writes an option (data padded with zeros to 4 bytes); returns the bytes written.</summary>
    public static int Write(Span<byte> destination, PcpOptionCode code, ReadOnlySpan<byte> data)
    {
        var padded = (data.Length + 3) & ~3;
        var d = destination[..(Pcp.OptionHeaderLength + padded)];
        d[0] = (byte)code;
        d[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(d[2..], (ushort)data.Length);
        data.CopyTo(d[4..]);
        d[(4 + data.Length)..].Clear();
        return d.Length;
    }

    /// <summary>Writes a THIRD_PARTY option naming <paramref name="address"/>; returns 20.</summary>
    public static int WriteThirdParty(Span<byte> destination, Ipv6Address address)
    {
        Span<byte> data = stackalloc byte[Pcp.ThirdPartyLength];
        address.Write(data);
        return Write(destination, PcpOptionCode.ThirdParty, data);
    }

    /// <summary>Writes a FILTER option (remote prefix and port; port 0 means all); returns 24.</summary>
    public static int WriteFilter(Span<byte> destination, byte prefixLength, ushort remotePort, Ipv6Address remote)
    {
        Span<byte> data = stackalloc byte[Pcp.FilterLength];
        data[0] = 0;
        data[1] = prefixLength;
        BinaryPrimitives.WriteUInt16BigEndian(data[2..], remotePort);
        remote.Write(data[4..]);
        return Write(destination, PcpOptionCode.Filter, data);
    }
}

/// <summary>
/// A PCP response (RFC 6887 section 7.2), a view over its bytes: version, R=1 and opcode, result, lifetime, epoch,
/// 12 reserved bytes, then opcode data and options.
/// </summary>
public readonly ref struct PcpResponse
{
    private PcpResponse(ReadOnlySpan<byte> buffer) => Buffer = buffer;

    public ReadOnlySpan<byte> Buffer { get; }

    public byte Version => Buffer[0];

    public byte Opcode => (byte)(Buffer[1] & 0x7F);

    public PcpResult Result => (PcpResult)Buffer[3];

    /// <summary>Seconds granted (success), or how long the error is likely to last.</summary>
    public uint Lifetime => BinaryPrimitives.ReadUInt32BigEndian(Buffer[4..]);

    /// <summary>The server's epoch time (section 8.5): seconds since its state began.</summary>
    public uint Epoch => BinaryPrimitives.ReadUInt32BigEndian(Buffer[8..]);

    public ReadOnlySpan<byte> Body => Buffer[Pcp.HeaderLength..];

    /// <summary>The MAP data when this answers a MAP and carries it.</summary>
    public bool TryGetMap(out PcpMapData map)
    {
        map = default;
        return Opcode == (byte)PcpOpcode.Map && PcpMapData.TryParse(Body, out map);
    }

    /// <summary>The PEER data when this answers a PEER and carries it.</summary>
    public bool TryGetPeer(out PcpPeerData peer)
    {
        peer = default;
        return Opcode == (byte)PcpOpcode.Peer && PcpPeerData.TryParse(Body, out peer);
    }

    /// <summary>Options after the opcode data.</summary>
    public PcpOptionReader Options
    {
        get
        {
            var skip = Opcode switch
            {
                (byte)PcpOpcode.Map => Pcp.MapDataLength,
                (byte)PcpOpcode.Peer => Pcp.PeerDataLength,
                _ => 0,
            };
            return new PcpOptionReader(Body.Length >= skip ? Body[skip..] : default);
        }
    }

    /// <summary>Views <paramref name="buffer"/> as a response: the 24-byte header with the R bit set, at most 1100
    /// bytes. (The version is the caller's to check: an UNSUPP_VERSION answer carries the server's version.)</summary>
    public static bool TryParse(ReadOnlySpan<byte> buffer, out PcpResponse response)
    {
        response = default;
        if (buffer.Length < Pcp.HeaderLength || buffer.Length > Pcp.MaxMessageLength || (buffer[1] & 0x80) == 0) return false;
        response = new PcpResponse(buffer);
        return true;
    }

    /// <summary>Writes the response header; returns 24.</summary>
    public static int WriteHeader(Span<byte> destination, byte opcode, PcpResult result, uint lifetime, uint epoch, byte version = Pcp.Version2)
    {
        var d = destination[..Pcp.HeaderLength];
        d[0] = version;
        d[1] = (byte)(opcode | 0x80);
        d[2] = 0;
        d[3] = (byte)result;
        BinaryPrimitives.WriteUInt32BigEndian(d[4..], lifetime);
        BinaryPrimitives.WriteUInt32BigEndian(d[8..], epoch);
        d[12..].Clear();
        return Pcp.HeaderLength;
    }
}
