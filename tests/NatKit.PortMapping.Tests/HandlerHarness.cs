using NatKit.Nat;
using NatKit.Packets;
using NatKit.PortMapping.NatPmp;
using NatKit.PortMapping.Pcp;

namespace NatKit.PortMapping.Tests;

/// <summary>A NAT engine (inside 192.168.1.0/24, outside 203.0.113.1) with a <see cref="PortMappingHandler"/> on it, on
/// virtual milliseconds.</summary>
internal sealed class HandlerHarness : IDisposable
{
    public static readonly Ipv4Address External = Ipv4Address.Parse("203.0.113.1");
    public static readonly NatEndpoint Host = new(Ipv4Address.Parse("192.168.1.10"), 40000);

    public static readonly NatPolicy Serving = NatPresets.PortRestrictedCone with { ServeNatPmp = true, ServePcp = true, ServeUpnp = true };

    private readonly byte[] _reply = new byte[PortMappingHandler.MaxReplyLength];

    public HandlerHarness(NatPolicy? policy = null)
    {
        Engine = new NatEngine(new NatConfig
        {
            Policy = policy ?? Serving,
            InsidePrefixes = [Ipv4Prefix.Parse("192.168.1.0/24")],
            ExternalAddresses = [External],
        }, Now);
        Handler = new PortMappingHandler(Engine, Now);
    }

    public NatEngine Engine { get; }

    public PortMappingHandler Handler { get; }

    public long Now { get; set; } = 1_000;

    public void Advance(TimeSpan by) => Now += (long)by.TotalMilliseconds;

    /// <summary>Sends <paramref name="request"/> from <paramref name="source"/> (default: the host); the answer's
    /// bytes, empty when dropped.</summary>
    public byte[] Send(ReadOnlySpan<byte> request, NatEndpoint? source = null)
    {
        var n = Handler.Handle(request, source ?? Host, Now, _reply);
        return _reply[..n];
    }

    public static byte[] NatPmpMap(NatPmpOpcode op, ushort internalPort, ushort externalPort, uint lifetime)
    {
        var b = new byte[12];
        NatPmpRequest.WriteMappingRequest(b, op, internalPort, externalPort, lifetime);
        return b;
    }

    /// <summary>A PCP MAP request from <paramref name="client"/> with the given nonce byte and options.</summary>
    public static byte[] PcpMap(byte nonce, byte protocol, ushort internalPort, ushort externalPort, uint lifetime,
        Ipv4Address? client = null, Ipv4Address? suggested = null, params Func<Span<byte>, int>[] options)
    {
        var b = new byte[Pcp.Pcp.MaxMessageLength];
        var n = PcpRequest.WriteHeader(b, PcpOpcode.Map, lifetime, Pcp.Pcp.Mapped(client ?? Host.Address));
        var nonceBytes = new byte[12];
        nonceBytes.AsSpan().Fill(nonce);
        n += PcpMapData.Write(b.AsSpan(n), nonceBytes, protocol, internalPort, externalPort, Pcp.Pcp.Mapped(suggested ?? Ipv4Address.Any));
        foreach (var o in options) n += o(b.AsSpan(n));
        return b[..n];
    }

    /// <summary>A PCP PEER request from <paramref name="client"/> toward <paramref name="remote"/>.</summary>
    public static byte[] PcpPeer(byte nonce, byte protocol, ushort internalPort, NatEndpoint remote, uint lifetime,
        Ipv4Address? client = null, ushort suggestedPort = 0, params Func<Span<byte>, int>[] options)
    {
        var b = new byte[Pcp.Pcp.MaxMessageLength];
        var n = PcpRequest.WriteHeader(b, PcpOpcode.Peer, lifetime, Pcp.Pcp.Mapped(client ?? Host.Address));
        var nonceBytes = new byte[12];
        nonceBytes.AsSpan().Fill(nonce);
        n += PcpPeerData.Write(b.AsSpan(n), nonceBytes, protocol, internalPort, suggestedPort, Pcp.Pcp.AnyIpv4, remote.Port,
            Pcp.Pcp.Mapped(remote.Address));
        foreach (var o in options) n += o(b.AsSpan(n));
        return b[..n];
    }

    /// <summary>Delivers a UDP datagram from <paramref name="remote"/> to the external endpoint; true when the engine
    /// forwards it inside.</summary>
    public bool Reaches(NatEndpoint remote, ushort externalPort)
    {
        var buffer = new byte[64];
        var n = PacketBuilder.WriteIpv4Udp(buffer, new Ipv4Header(remote.Address, External), remote.Port, externalPort, new byte[4]);
        return Engine.Process(buffer, ref n, NatDirection.Inbound, Now, null).Action == NatAction.ForwardInside;
    }

    public void Dispose() => Engine.Dispose();
}
