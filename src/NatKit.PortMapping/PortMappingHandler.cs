using NatKit.Nat;
using NatKit.Packets;
using NatKit.PortMapping.NatPmp;
using NatKit.PortMapping.Pcp;

namespace NatKit.PortMapping;

/// <summary>What a <see cref="PortMappingHandler"/> has done since it started.</summary>
/// <param name="Requests">Datagrams handed in.</param>
/// <param name="Dropped">Datagrams not answered: from outside, too short, responses, or a protocol not offered.</param>
/// <param name="Granted">Mappings created or refreshed.</param>
/// <param name="Deleted">Delete requests served.</param>
/// <param name="Refused">Answers with an error result.</param>
public readonly record struct PortMappingCounters(long Requests, long Dropped, long Granted, long Deleted, long Refused);

/// <summary>
/// The NAT-PMP and PCP server's pure core for port 5351 (RFC 6886, RFC 6887): request bytes, their source and the
/// engine time in; the answer's bytes out (written to <c>reply</c>, 0 when there is none), and the mappings made
/// through <see cref="IMappingTable"/>. Which protocols it answers is the NAT policy's (<see cref="NatPolicy.ServeNatPmp"/>,
/// <see cref="NatPolicy.ServePcp"/>); the version byte tells them apart (RFC 6887 section 9). Requests from outside the
/// NAT are dropped; a host maps only its own address unless <see cref="NatPolicy.AllowThirdPartyMappings"/>. Never
/// throws for any bytes. One caller at a time, on the thread that drives the table (as for the engine).
/// </summary>
public sealed partial class PortMappingHandler
{
    /// <summary>The port NAT-PMP and PCP share (RFC 6886 section 3.1, RFC 6887 section 19.1).</summary>
    public const ushort Port = 5351;

    /// <summary>The reply buffer needs this much room (PCP's largest message).</summary>
    public const int MaxReplyLength = Pcp.Pcp.MaxMessageLength;

    /// <summary>RFC 6886 section 3.2.1 (and RFC 6887 section 14.1.3, which follows it): after a restart or an address
    /// change, the announcement goes out 10 times, the first at once and each gap twice the previous, from 250 ms.</summary>
    public static IReadOnlyList<TimeSpan> AnnouncementSchedule { get; } =
        [.. Enumerable.Range(0, 10).Select(i => i == 0 ? TimeSpan.Zero : TimeSpan.FromMilliseconds(250 * ((1 << i) - 1)))];

    private readonly IMappingTable _table;
    private long _epochStart;
    private long _requests;
    private long _dropped;
    private long _granted;
    private long _deleted;
    private long _refused;

    /// <param name="table">The NAT's explicit mappings.</param>
    /// <param name="now">The engine time (ms) the server starts at: its epoch begins here.</param>
    public PortMappingHandler(IMappingTable table, long now)
    {
        _table = table ?? throw new ArgumentNullException(nameof(table));
        _epochStart = now;
    }

    /// <summary>The table mappings are made in.</summary>
    public IMappingTable Table => _table;

    /// <summary>Counters since start.</summary>
    public PortMappingCounters Counters => new(_requests, _dropped, _granted, _deleted, _refused);

    /// <summary>Seconds since the epoch began (RFC 6886 section 3.6, RFC 6887 section 8.5).</summary>
    public uint EpochSeconds(long now) => now <= _epochStart ? 0 : (uint)Math.Min(uint.MaxValue, (now - _epochStart) / 1000);

    /// <summary>The server lost its state or its external address changed: the epoch starts over, so clients see the
    /// jump back and renew (RFC 6886 section 3.6, RFC 6887 section 8.5). Send the announcements after this.</summary>
    public void ResetEpoch(long now)
    {
        _epochStart = now;
        _owners.Clear();
    }

    /// <summary>The external address NAT-PMP reports and announces.</summary>
    public Ipv4Address ExternalAddress => _table.ExternalAddresses[0];

    /// <summary>Writes the NAT-PMP announcement (an unsolicited external address response, RFC 6886 section 3.2.1)
    /// for 224.0.0.1:5350; 0 when NAT-PMP is not offered.</summary>
    public int WriteNatPmpAnnouncement(Span<byte> destination, long now) => _table.Policy.ServeNatPmp
        ? NatPmpResponse.WriteExternalAddress(destination, NatPmpResult.Success, EpochSeconds(now), ExternalAddress)
        : 0;

    /// <summary>Writes the PCP unsolicited ANNOUNCE response (RFC 6887 section 14.1.3) for 224.0.0.1:5350; 0 when PCP
    /// is not offered.</summary>
    public int WritePcpAnnouncement(Span<byte> destination, long now) => _table.Policy.ServePcp
        ? PcpResponse.WriteHeader(destination, (byte)PcpOpcode.Announce, PcpResult.Success, 0, EpochSeconds(now))
        : 0;

    /// <summary>
    /// Handles one datagram that arrived on port 5351 from <paramref name="source"/>. Returns the length of the answer
    /// written to <paramref name="reply"/> (at least <see cref="MaxReplyLength"/> bytes), or 0 when it is dropped.
    /// </summary>
    public int Handle(ReadOnlySpan<byte> request, NatEndpoint source, long now, Span<byte> reply)
    {
        _requests++;
        if (reply.Length < MaxReplyLength) throw new ArgumentException($"the reply buffer needs {MaxReplyLength} bytes", nameof(reply));
        var policy = _table.Policy;
        // Section 3 of RFC 6886 and section 8.3 of RFC 6887: only the inside may ask; a request too short to have a
        // version and an opcode, or a response (opcode 128 and up, or PCP's R bit), is not answered.
        if (request.Length < 2 || !_table.IsInside(source.Address) || (request[1] & 0x80) != 0) return Drop();
        if (request[0] == NatPmpRequest.Version0 && policy.ServeNatPmp) return Counted(HandleNatPmp(request, source, now, reply), reply);
        if (policy.ServePcp) return Counted(HandlePcp(request, source, now, reply), reply);
        if (policy.ServeNatPmp) return Counted(NatPmpResponse.WriteHeader(reply, request[1], NatPmpResult.UnsupportedVersion, EpochSeconds(now)), reply);
        return Drop();
    }

    private int Drop()
    {
        _dropped++;
        return 0;
    }

    /// <summary>Counts an answer as refused when its result is not success (both protocols keep it in bytes 2-3).</summary>
    private int Counted(int length, ReadOnlySpan<byte> reply)
    {
        if (length == 0) _dropped++;
        else if (reply[2] != 0 || reply[3] != 0) _refused++;
        return length;
    }
}
