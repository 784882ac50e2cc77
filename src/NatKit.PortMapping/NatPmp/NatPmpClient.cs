using System.Net;
using NatKit.Net;
using NatKit.Packets;

namespace NatKit.PortMapping.NatPmp;

/// <summary>
/// A NAT-PMP client (RFC 6886) for one gateway: its external address, and mappings requested, renewed (the same
/// request again) and deleted (lifetime 0). Runs on any <see cref="INetwork"/>, the lab's included.
/// </summary>
public sealed class NatPmpClient
{
    private readonly INetwork _network;
    private readonly IPEndPoint _gateway;
    private readonly PortMappingClientOptions _options;

    /// <param name="network">Where the socket comes from.</param>
    /// <param name="gateway">The gateway's inside address (port 5351 when the endpoint's is 0).</param>
    /// <param name="options">Timing and the local address.</param>
    public NatPmpClient(INetwork network, IPEndPoint gateway, PortMappingClientOptions? options = null)
    {
        _network = network ?? throw new ArgumentNullException(nameof(network));
        ArgumentNullException.ThrowIfNull(gateway);
        _gateway = gateway.Port == 0 ? new IPEndPoint(gateway.Address, NatPmpRequest.ServerPort) : gateway;
        _options = options ?? new PortMappingClientOptions();
        var errors = _options.Validate();
        if (errors.Count > 0) throw new ArgumentException(errors[0], nameof(options));
    }

    /// <summary>The gateway's NAT-PMP endpoint.</summary>
    public IPEndPoint Gateway => _gateway;

    /// <summary>Section 3.2: the external address and the epoch, or null when the gateway does not answer.</summary>
    /// <exception cref="PortMappingException">The gateway answered with an error.</exception>
    public async Task<(IPAddress Address, uint Epoch)?> GetExternalAddressAsync(CancellationToken cancellationToken = default)
    {
        var request = new byte[NatPmpRequest.ExternalAddressLength];
        NatPmpRequest.WriteExternalAddressRequest(request);
        var answer = await PortMappingExchange.ExchangeAsync(_network, _options, _gateway, request,
            a => NatPmpResponse.TryParse(a, out var r) && r.Opcode == 128, cancellationToken);
        if (answer is null) return null;
        NatPmpResponse.TryParse(answer, out var response);
        Check(response.Result);
        return (response.ExternalAddress.ToIPAddress(), response.Epoch);
    }

    /// <summary>Section 3.3: maps (or renews) <paramref name="internalPort"/>; null when the gateway does not answer.
    /// The external address is the one <see cref="GetExternalAddressAsync"/> reports.</summary>
    /// <exception cref="PortMappingException">The gateway refused.</exception>
    public async Task<PortMappingGrant?> MapAsync(IpProtocol transport, int internalPort, int suggestedExternalPort, TimeSpan lifetime,
        CancellationToken cancellationToken = default)
    {
        if (lifetime <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(lifetime), "a mapping needs a lifetime; delete with DeleteAsync");
        var external = await GetExternalAddressAsync(cancellationToken);
        if (external is null) return null;
        var answer = await MapRequestAsync(transport, internalPort, suggestedExternalPort, (uint)Math.Min(uint.MaxValue, lifetime.TotalSeconds), cancellationToken);
        if (answer is null) return null;
        NatPmpResponse.TryParse(answer, out var response);
        Check(response.Result);
        return new PortMappingGrant(PortMappingProtocol.NatPmp, transport, internalPort,
            new IPEndPoint(external.Value.Address, response.MappedExternalPort), TimeSpan.FromSeconds(response.Lifetime), response.Epoch);
    }

    /// <summary>Section 3.4: deletes the mapping of <paramref name="internalPort"/> (0: all of this host's for the
    /// protocol). True when the gateway confirmed.</summary>
    public async Task<bool> DeleteAsync(IpProtocol transport, int internalPort, CancellationToken cancellationToken = default)
    {
        var answer = await MapRequestAsync(transport, internalPort, 0, 0, cancellationToken);
        return answer is not null && NatPmpResponse.TryParse(answer, out var r) && r.Result == NatPmpResult.Success;
    }

    private Task<byte[]?> MapRequestAsync(IpProtocol transport, int internalPort, int suggested, uint lifetime, CancellationToken cancellationToken)
    {
        PortMappingExchange.CheckRequest(transport, internalPort, suggested);
        var opcode = transport == IpProtocol.Tcp ? NatPmpOpcode.MapTcp : NatPmpOpcode.MapUdp;
        var request = new byte[NatPmpRequest.MappingLength];
        NatPmpRequest.WriteMappingRequest(request, opcode, (ushort)internalPort, (ushort)suggested, lifetime);
        return PortMappingExchange.ExchangeAsync(_network, _options, _gateway, request,
            a => NatPmpResponse.TryParse(a, out var r) && r.Opcode == (byte)opcode + 128 && (r.Result != NatPmpResult.Success || r.HasMapping)
                 && (r.Result != NatPmpResult.Success || r.InternalPort == internalPort),
            cancellationToken);
    }

    private static void Check(NatPmpResult result)
    {
        if (result != NatPmpResult.Success)
        {
            throw new PortMappingException($"the gateway refused: NAT-PMP result {(int)result} ({result}).");
        }
    }
}
