using System.Net;
using System.Security.Cryptography;
using NatKit.Net;
using NatKit.Packets;

namespace NatKit.PortMapping.Pcp;

/// <summary>
/// A PCP client (RFC 6887) for one server: ANNOUNCE (is it there, what is its epoch), MAP requested, renewed (same
/// nonce) and deleted (lifetime 0). One nonce per client, so the mappings it makes are its own (section 11.1). Runs on
/// any <see cref="INetwork"/>.
/// </summary>
public sealed class PcpClient
{
    private readonly INetwork _network;
    private readonly IPEndPoint _server;
    private readonly PortMappingClientOptions _options;
    private readonly byte[] _nonce = RandomNumberGenerator.GetBytes(Pcp.NonceLength);

    /// <param name="network">Where the socket comes from.</param>
    /// <param name="server">The PCP server (the gateway; port 5351 when the endpoint's is 0).</param>
    /// <param name="options">Timing and the local address.</param>
    public PcpClient(INetwork network, IPEndPoint server, PortMappingClientOptions? options = null)
    {
        _network = network ?? throw new ArgumentNullException(nameof(network));
        ArgumentNullException.ThrowIfNull(server);
        _server = server.Port == 0 ? new IPEndPoint(server.Address, Pcp.ServerPort) : server;
        _options = options ?? new PortMappingClientOptions();
        var errors = _options.Validate();
        if (errors.Count > 0) throw new ArgumentException(errors[0], nameof(options));
    }

    /// <summary>The server's endpoint.</summary>
    public IPEndPoint Server => _server;

    /// <summary>Section 14.1: the server's epoch, or null when it does not answer (or does not speak PCP).</summary>
    public async Task<uint?> AnnounceAsync(CancellationToken cancellationToken = default)
    {
        var request = new byte[Pcp.HeaderLength];
        PcpRequest.WriteHeader(request, PcpOpcode.Announce, 0, ClientAddress());
        var answer = await PortMappingExchange.ExchangeAsync(_network, _options, _server, request,
            a => PcpResponse.TryParse(a, out var r) && (r.Opcode == (byte)PcpOpcode.Announce || r.Result == PcpResult.UnsupportedVersion),
            cancellationToken);
        if (answer is null) return null;
        PcpResponse.TryParse(answer, out var response);
        return response.Result == PcpResult.Success ? response.Epoch : null;
    }

    /// <summary>Section 11: maps (or renews) <paramref name="internalPort"/>; null when the server does not answer.</summary>
    /// <param name="transport">Udp or Tcp.</param>
    /// <param name="internalPort">The local port.</param>
    /// <param name="suggestedExternalPort">A wish (0: any).</param>
    /// <param name="lifetime">Asked for; the server may grant less or more.</param>
    /// <param name="preferFailure">Fail rather than take another port (PREFER_FAILURE, section 13.2).</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <exception cref="PortMappingException">The server refused.</exception>
    public async Task<PortMappingGrant?> MapAsync(IpProtocol transport, int internalPort, int suggestedExternalPort, TimeSpan lifetime,
        bool preferFailure = false, CancellationToken cancellationToken = default)
    {
        if (lifetime <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(lifetime), "a mapping needs a lifetime; delete with DeleteAsync");
        var answer = await MapRequestAsync(transport, internalPort, suggestedExternalPort, (uint)Math.Min(uint.MaxValue, lifetime.TotalSeconds),
            preferFailure, cancellationToken);
        if (answer is null) return null;
        PcpResponse.TryParse(answer, out var response);
        if (response.Result != PcpResult.Success)
        {
            throw new PortMappingException($"the server refused: PCP result {(int)response.Result} ({response.Result}).");
        }

        response.TryGetMap(out var map);
        var address = Pcp.Unmapped(map.ExternalAddress) is { } v4 ? v4.ToIPAddress() : map.ExternalAddress.ToIPAddress();
        return new PortMappingGrant(PortMappingProtocol.Pcp, transport, internalPort, new IPEndPoint(address, map.ExternalPort),
            TimeSpan.FromSeconds(response.Lifetime), response.Epoch);
    }

    /// <summary>Section 15: deletes this client's mapping of <paramref name="internalPort"/> (0: all of its mappings
    /// of the protocol). True when the server confirmed.</summary>
    public async Task<bool> DeleteAsync(IpProtocol transport, int internalPort, CancellationToken cancellationToken = default)
    {
        var answer = await MapRequestAsync(transport, internalPort, 0, 0, false, cancellationToken);
        return answer is not null && PcpResponse.TryParse(answer, out var r) && r.Result == PcpResult.Success;
    }

    private Task<byte[]?> MapRequestAsync(IpProtocol transport, int internalPort, int suggested, uint lifetime, bool preferFailure,
        CancellationToken cancellationToken)
    {
        PortMappingExchange.CheckRequest(transport, internalPort, suggested);
        var request = new byte[Pcp.HeaderLength + Pcp.MapDataLength + Pcp.OptionHeaderLength];
        var n = PcpRequest.WriteHeader(request, PcpOpcode.Map, lifetime, ClientAddress());
        n += PcpMapData.Write(request.AsSpan(n), _nonce, (byte)transport, (ushort)internalPort, (ushort)suggested, Pcp.AnyIpv4);
        if (preferFailure) n += PcpOptionReader.Write(request.AsSpan(n), PcpOptionCode.PreferFailure, default);
        var nonce = _nonce;
        return PortMappingExchange.ExchangeAsync(_network, _options, _server, request.AsMemory(0, n),
            a => PcpResponse.TryParse(a, out var r) && (r.Result == PcpResult.UnsupportedVersion ||
                 (r.TryGetMap(out var m) && m.Nonce.SequenceEqual(nonce) && m.InternalPort == internalPort && m.Protocol == (byte)transport)),
            cancellationToken);
    }

    private Ipv6Address ClientAddress() =>
        Pcp.Mapped(Ipv4Address.FromIPAddress(PortMappingExchange.LocalAddress(_network, _options, _server.Address)));
}
