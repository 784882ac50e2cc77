using System.Net;
using NatKit.Packets;
using NatKit.PortMapping.Upnp;

namespace NatKit.PortMapping;

/// <summary>UPnP IGD behind <see cref="PortMapper"/>: the last resort after PCP and NAT-PMP, as many routers offer
/// UPnP only.</summary>
public sealed partial class PortMapper
{
    /// <summary>How long SSDP discovery waits for the IGD's answers.</summary>
    public static readonly TimeSpan UpnpDiscoveryWait = TimeSpan.FromSeconds(2);

    private UpnpClient? _upnp;

    /// <summary>The gateway's UPnP IGD once a mapping looked for it (null before, or when none answered).</summary>
    public UpnpClient? Upnp => _upnp;

    /// <summary>Finds the IGD: the one at the gateway's address if it answered SSDP, else the first that did.</summary>
    private async Task<UpnpClient?> FindUpnpAsync(CancellationToken cancellationToken)
    {
        if (_upnp is not null)
        {
            return _upnp;
        }

        var local = PortMappingExchange.LocalAddress(_network, _options, Gateway.Address);
        var found = await UpnpClient.DiscoverAsync(_network, local, UpnpDiscoveryWait, cancellationToken);
        foreach (var location in found.OrderByDescending(l => IPAddress.TryParse(l.Host, out var a) && a.Equals(Gateway.Address)))
        {
            try
            {
                return _upnp = await UpnpClient.ConnectAsync(_network, location, local, cancellationToken);
            }
            catch (UpnpException)
            {
                // not an IGD we can use: try the next
            }
        }

        return null;
    }

    private async Task<PortMappingGrant?> MapUpnpAsync(IpProtocol transport, int internalPort, int externalPort,
        TimeSpan lifetime, CancellationToken cancellationToken)
    {
        var client = await FindUpnpAsync(cancellationToken);
        if (client is null)
        {
            return null;
        }

        try
        {
            var m = await client.AddPortMappingAsync(transport, internalPort, externalPort, lifetime, "NatKit",
                cancellationToken);
            return new PortMappingGrant(PortMappingProtocol.Upnp, transport, internalPort, m.External, m.Lifetime, 0);
        }
        catch (UpnpException e) when (e.Error != UpnpError.None)
        {
            throw new PortMappingException($"the UPnP IGD at {client.Location} refused: {e.Message}");
        }
        catch (UpnpException)
        {
            return null; // no (usable) answer
        }
    }

    private Task<PortMappingGrant?> RenewUpnpAsync(PortMappingGrant grant, TimeSpan lifetime, CancellationToken cancellationToken) =>
        MapUpnpAsync(grant.Transport, grant.InternalPort, grant.External.Port, lifetime, cancellationToken);

    private async Task<bool> DeleteUpnpAsync(PortMappingGrant grant, CancellationToken cancellationToken)
    {
        try
        {
            return _upnp is not null && await _upnp.DeletePortMappingAsync(grant.Transport, grant.External.Port, cancellationToken);
        }
        catch (UpnpException)
        {
            return false;
        }
    }
}
