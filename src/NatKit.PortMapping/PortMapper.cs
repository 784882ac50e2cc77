using System.Net;
using NatKit.Net;
using NatKit.Packets;
using NatKit.PortMapping.NatPmp;
using NatKit.PortMapping.Pcp;

namespace NatKit.PortMapping;

/// <summary>What a gateway offers, as <see cref="PortMapper.ProbeAsync"/> found it.</summary>
/// <param name="NatPmp">It answered NAT-PMP.</param>
/// <param name="Pcp">It answered PCP.</param>
/// <param name="ExternalAddress">The external address NAT-PMP reported, or null.</param>
/// <param name="Epoch">The epoch of the first protocol that answered, or null.</param>
public sealed record PortMappingProbe(bool NatPmp, bool Pcp, IPAddress? ExternalAddress, uint? Epoch);

/// <summary>
/// Asks one gateway for mappings the way RFC 6887 section 9 says a client does: PCP first, NAT-PMP when PCP gets no
/// answer or is refused as an unknown version; then UPnP IGD (found by SSDP) when neither answers. The mapping comes back as a <see cref="PortMappingLease"/> that renews
/// itself and deletes the mapping when disposed.
/// </summary>
public sealed partial class PortMapper
{
    private readonly INetwork _network;
    private readonly PcpClient _pcp;
    private readonly NatPmpClient _natPmp;
    private readonly PortMappingClientOptions _options;

    /// <param name="network">Where sockets and the clock come from.</param>
    /// <param name="gateway">The gateway's inside address (port 5351 when 0).</param>
    /// <param name="options">Timing and the local address.</param>
    public PortMapper(INetwork network, IPEndPoint gateway, PortMappingClientOptions? options = null)
    {
        _network = network ?? throw new ArgumentNullException(nameof(network));
        _pcp = new PcpClient(network, gateway, options);
        _natPmp = new NatPmpClient(network, gateway, options);
        _options = options ?? new PortMappingClientOptions();
    }

    /// <summary>The gateway's port mapping endpoint.</summary>
    public IPEndPoint Gateway => _pcp.Server;

    public PcpClient Pcp => _pcp;

    public NatPmpClient NatPmp => _natPmp;

    /// <summary>Which protocols the gateway answers, and its external address.</summary>
    public async Task<PortMappingProbe> ProbeAsync(CancellationToken cancellationToken = default)
    {
        var pcp = await _pcp.AnnounceAsync(cancellationToken);
        (IPAddress Address, uint Epoch)? natPmp = null;
        try
        {
            natPmp = await _natPmp.GetExternalAddressAsync(cancellationToken);
        }
        catch (PortMappingException)
        {
            // answered, but not with NAT-PMP success (a PCP-only server's UNSUPP_VERSION parses as no NAT-PMP)
        }

        return new PortMappingProbe(natPmp is not null, pcp is not null, natPmp?.Address, pcp ?? natPmp?.Epoch);
    }

    /// <summary>
    /// Maps <paramref name="internalPort"/> with <paramref name="only"/> or, when null, PCP then NAT-PMP; null when
    /// the gateway answers neither.
    /// </summary>
    /// <exception cref="PortMappingException">The gateway answered and refused.</exception>
    public async Task<PortMappingLease?> MapAsync(IpProtocol transport, int internalPort, TimeSpan lifetime, int suggestedExternalPort = 0,
        PortMappingProtocol? only = null, CancellationToken cancellationToken = default)
    {
        PortMappingGrant? grant = null;
        if (only is null or PortMappingProtocol.Pcp)
        {
            grant = await _pcp.MapAsync(transport, internalPort, suggestedExternalPort, lifetime, cancellationToken: cancellationToken);
        }

        if (grant is null && only is null or PortMappingProtocol.NatPmp)
        {
            grant = await _natPmp.MapAsync(transport, internalPort, suggestedExternalPort, lifetime, cancellationToken);
        }

        if (grant is null && only is null or PortMappingProtocol.Upnp)
        {
            grant = await MapUpnpAsync(transport, internalPort, suggestedExternalPort, lifetime, cancellationToken);
        }

        return grant is null ? null : new PortMappingLease(this, grant, lifetime);
    }

    internal Task<PortMappingGrant?> RenewAsync(PortMappingGrant grant, TimeSpan lifetime, CancellationToken cancellationToken) =>
        grant.Protocol == PortMappingProtocol.Upnp ? RenewUpnpAsync(grant, lifetime, cancellationToken) :
        grant.Protocol == PortMappingProtocol.Pcp
            ? _pcp.MapAsync(grant.Transport, grant.InternalPort, grant.External.Port, lifetime, cancellationToken: cancellationToken)
            : _natPmp.MapAsync(grant.Transport, grant.InternalPort, grant.External.Port, lifetime, cancellationToken);

    internal Task<bool> DeleteAsync(PortMappingGrant grant, CancellationToken cancellationToken) =>
        grant.Protocol == PortMappingProtocol.Upnp ? DeleteUpnpAsync(grant, cancellationToken) :
        grant.Protocol == PortMappingProtocol.Pcp
            ? _pcp.DeleteAsync(grant.Transport, grant.InternalPort, cancellationToken)
            : _natPmp.DeleteAsync(grant.Transport, grant.InternalPort, cancellationToken);

    internal TimeProvider Time => _network.TimeProvider;
}

/// <summary>
/// A granted mapping kept alive: renewed when half its lifetime is gone (RFC 6886 section 3.3, RFC 6887 section
/// 11.2.1), with the renewal's answer replacing <see cref="Grant"/> (a restarted gateway may hand out another port),
/// and deleted on <see cref="DisposeAsync"/>.
/// </summary>
public sealed class PortMappingLease : IAsyncDisposable
{
    private readonly PortMapper _mapper;
    private readonly TimeSpan _lifetime;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _renewing;
    private PortMappingGrant _grant;
    private int _disposed;

    internal PortMappingLease(PortMapper mapper, PortMappingGrant grant, TimeSpan lifetime)
    {
        _mapper = mapper;
        _grant = grant;
        _lifetime = lifetime;
        _renewing = RenewLoopAsync(_stop.Token);
    }

    /// <summary>The mapping as last granted.</summary>
    public PortMappingGrant Grant => Volatile.Read(ref _grant);

    /// <summary>The external endpoint outsiders reach the internal port on.</summary>
    public IPEndPoint External => Grant.External;

    /// <summary>Raised when a renewal brought another external endpoint.</summary>
    public event Action<PortMappingGrant>? Changed;

    /// <summary>Renewals that got no answer or a refusal since the last success.</summary>
    public int FailedRenewals { get; private set; }

    private async Task RenewLoopAsync(CancellationToken stop)
    {
        try
        {
            while (true)
            {
                var grant = Grant;
                var half = grant.Lifetime / 2;
                if (half < TimeSpan.FromSeconds(1)) half = TimeSpan.FromSeconds(1);
                await Task.Delay(half, _mapper.Time, stop);
                PortMappingGrant? renewed = null;
                try
                {
                    renewed = await _mapper.RenewAsync(grant, _lifetime, stop);
                }
                catch (PortMappingException)
                {
                }

                if (renewed is null)
                {
                    FailedRenewals++;
                    continue;
                }

                FailedRenewals = 0;
                Volatile.Write(ref _grant, renewed);
                if (!renewed.External.Equals(grant.External)) Changed?.Invoke(renewed);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>Stops renewing and deletes the mapping (best effort: a gateway that does not answer lets it expire).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stop.Cancel(); // synchronously, on the caller's loop (CancelAsync would run the callbacks on the thread pool, outside a lab's)
        await _renewing;
        _stop.Dispose();
        await _mapper.DeleteAsync(Grant, CancellationToken.None);
    }
}
