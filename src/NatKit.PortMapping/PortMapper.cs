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

    internal INetwork Network => _network;

    internal PortMappingClientOptions Options => _options;
}

/// <summary>What a gateway's announcement (RFC 6886 section 3.2.1, RFC 6887 section 14.1.3) says.</summary>
/// <param name="Epoch">The gateway's epoch seconds.</param>
/// <param name="ExternalAddress">The external address (NAT-PMP's announcement carries it; PCP's does not).</param>
public readonly record struct PortMappingAnnouncement(uint Epoch, IPAddress? ExternalAddress)
{
    /// <summary>Reads a datagram sent to 224.0.0.1:5350: a NAT-PMP external address response with success, or a PCP
    /// ANNOUNCE response with success. False for anything else; never throws.</summary>
    public static bool TryParse(ReadOnlySpan<byte> datagram, out PortMappingAnnouncement announcement)
    {
        announcement = default;
        if (datagram.Length >= 1 && datagram[0] == NatPmpRequest.Version0)
        {
            if (!NatPmpResponse.TryParse(datagram, out var natPmp) || !natPmp.HasExternalAddress || natPmp.Result != NatPmpResult.Success) return false;
            announcement = new(natPmp.Epoch, natPmp.ExternalAddress.ToIPAddress());
            return true;
        }

        if (!PcpResponse.TryParse(datagram, out var pcp) || pcp.Version != Pcp.Pcp.Version2 || pcp.Opcode != (byte)PcpOpcode.Announce ||
            pcp.Result != PcpResult.Success) return false;
        announcement = new(pcp.Epoch, null);
        return true;
    }

    /// <summary>
    /// True when this announcement says the gateway lost the mapping a client got at epoch <paramref name="grantEpoch"/>,
    /// <paramref name="elapsed"/> ago on the client's clock, for external address <paramref name="external"/>: the
    /// epoch is below the grant's, or less than 7/8 of the client's elapsed time (less 2 s of slack) went by on the
    /// gateway's;
    /// RFC 6886 section 3.6, RFC 6887 section 8.5), or the external address changed.
    /// </summary>
    public bool SaysRenew(uint grantEpoch, TimeSpan elapsed, IPAddress external)
    {
        ArgumentNullException.ThrowIfNull(external);
        if (ExternalAddress is not null && !ExternalAddress.Equals(external)) return true;
        if (Epoch < grantEpoch) return true; // a server's epoch never goes back unless it started over
        var expected = grantEpoch + elapsed.TotalSeconds * 7 / 8;
        return Epoch + 2.0 < expected;
    }
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
    private readonly Task _listening;
    private PortMappingGrant _grant;
    private long _grantedAt;
    private CancellationTokenSource? _wake;
    private int _disposed;

    internal PortMappingLease(PortMapper mapper, PortMappingGrant grant, TimeSpan lifetime)
    {
        _mapper = mapper;
        _grant = grant;
        _grantedAt = mapper.Time.GetTimestamp();
        _lifetime = lifetime;
        _renewing = RenewLoopAsync(_stop.Token);
        _listening = grant.Protocol == PortMappingProtocol.Upnp ? Task.CompletedTask : ListenLoopAsync(_stop.Token);
    }

    /// <summary>The mapping as last granted.</summary>
    public PortMappingGrant Grant => Volatile.Read(ref _grant);

    /// <summary>The external endpoint outsiders reach the internal port on.</summary>
    public IPEndPoint External => Grant.External;

    /// <summary>Raised when a renewal brought another external endpoint.</summary>
    public event Action<PortMappingGrant>? Changed;

    /// <summary>Raised after every successful renewal, with what the gateway granted.</summary>
    public event Action<PortMappingGrant>? Renewed;

    /// <summary>Renewals that got no answer or a refusal since the last success.</summary>
    public int FailedRenewals { get; private set; }

    /// <summary>Announcements from the gateway that made this lease renew at once (the epoch went back or the
    /// external address changed).</summary>
    public int AnnouncedRestarts { get; private set; }

    private async Task RenewLoopAsync(CancellationToken stop)
    {
        try
        {
            while (true)
            {
                var grant = Grant;
                var half = grant.Lifetime / 2;
                if (half < TimeSpan.FromSeconds(1)) half = TimeSpan.FromSeconds(1);
                using (var wake = CancellationTokenSource.CreateLinkedTokenSource(stop))
                {
                    Volatile.Write(ref _wake, wake);
                    try
                    {
                        await Task.Delay(half, _mapper.Time, wake.Token);
                    }
                    catch (OperationCanceledException) when (!stop.IsCancellationRequested)
                    {
                        // an announcement said the gateway restarted: renew now
                    }
                    finally
                    {
                        Volatile.Write(ref _wake, null);
                    }
                }

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
                Interlocked.Exchange(ref _grantedAt, _mapper.Time.GetTimestamp());
                Renewed?.Invoke(renewed);
                if (!renewed.External.Equals(grant.External)) Changed?.Invoke(renewed);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Listens for the gateway's announcements on 224.0.0.1:5350 (joined on the local address only, so nothing is
    /// asked of another interface) and wakes the renewal when one says the mapping is gone. Quietly does nothing on
    /// a network without multicast, without a specific local address, or where the port cannot be shared.
    /// </summary>
    private async Task ListenLoopAsync(CancellationToken stop)
    {
        if (_mapper.Network is not IMulticastNetwork multicast) return;
        var local = PortMappingExchange.LocalAddress(_mapper.Network, _mapper.Options, _mapper.Gateway.Address);
        if (local.Equals(IPAddress.Any)) return;
        IMulticastDatagramSocket socket;
        try
        {
            socket = await multicast.BindMulticastUdpAsync(new IPEndPoint(IPAddress.Any, Pcp.Pcp.ClientPort), stop);
            socket.JoinGroup(PortMappingAnnouncer.Group.Address.ToIPAddress(), local);
        }
        catch (NetworkException)
        {
            return;
        }
        catch (OperationCanceledException)
        {
            return;
        }

        await using (socket)
        {
            var buffer = new byte[Pcp.Pcp.MaxMessageLength];
            while (!stop.IsCancellationRequested)
            {
                ReceivedMessage got;
                try
                {
                    got = await socket.ReceiveMessageFromAsync(buffer, stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                catch (ObjectDisposedException)
                {
                    return;
                }

                // RFC 6886 section 3.2.1: only the gateway's own announcements count.
                if (!got.RemoteEndPoint.Address.Equals(_mapper.Gateway.Address) ||
                    !PortMappingAnnouncement.TryParse(buffer.AsSpan(0, got.Length), out var announcement))
                {
                    continue;
                }

                var grant = Grant;
                if (announcement.SaysRenew(grant.Epoch, _mapper.Time.GetElapsedTime(Interlocked.Read(ref _grantedAt)), grant.External.Address))
                {
                    try
                    {
                        // one renewal per restart: the second protocol's announcement of the same round, or one
                        // heard while the renewal is under way, wakes nothing
                        if (Volatile.Read(ref _wake) is { IsCancellationRequested: false } wake)
                        {
                            AnnouncedRestarts++;
                            wake.Cancel();
                        }
                    }
                    catch (ObjectDisposedException)
                    {
                        // the renewal woke on its own meanwhile
                    }
                }
            }
        }
    }

    /// <summary>Stops renewing and deletes the mapping (best effort: a gateway that does not answer lets it expire).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stop.Cancel(); // synchronously, on the caller's loop (CancelAsync would run the callbacks on the thread pool, outside a lab's)
        await _renewing;
        await _listening;
        _stop.Dispose();
        await _mapper.DeleteAsync(Grant, CancellationToken.None);
    }
}
