using System.Globalization;
using System.Net;
using System.Net.Sockets;
using NatKit.Linux;
using NatKit.Nat.Ports;
using NatKit.Tunnel.Framing;

namespace NatKit.Tunnel.Client;

/// <summary>
/// A tunnel client's inside on a Linux machine (root): a TUN device with the assigned address and the chosen routes
/// (a default route goes in as two /1 routes after a host route that keeps the server reachable), and a
/// <see cref="GatewayDataPlane"/> thread without an engine between its <see cref="TunPort"/> and the link.
/// </summary>
internal sealed class TunClientInside(TunnelClientOptions options) : ITunnelClientInside
{
    private readonly TunnelClientOptions _options = options ?? throw new ArgumentNullException(nameof(options));
    private TunDevice? _tun;
    private GatewayDataPlane? _dataPlane;
    private string? _serverRoute;

    /// <summary>The data plane's counters, once started.</summary>
    public GatewayStats? Stats => _dataPlane?.Stats;

    /// <summary>Creates and configures the TUN device and starts the data plane.</summary>
    public async Task StartAsync(TunnelWelcome welcome, ISignalingPacketPort link, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(welcome);
        var name = _options.TunName;
        {
            await KeepServerRouteAsync(cancellationToken).ConfigureAwait(false);
            _tun = TunDevice.Open(new TunOptions(name, _options.Offloads ? TunOffloads.All : TunOffloads.None));
            DisableIpv6(name);
            await Ip(cancellationToken, "link", "set", "dev", name, "mtu", welcome.Mtu.ToString(CultureInfo.InvariantCulture), "up").ConfigureAwait(false);
            await Ip(cancellationToken, "addr", "replace", welcome.AddressWithPrefix, "dev", name).ConfigureAwait(false);
            foreach (var route in _options.Routes ?? welcome.Routes)
            {
                if (route.Length == 0)
                {
                    await Ip(cancellationToken, "route", "replace", "0.0.0.0/1", "dev", name).ConfigureAwait(false);
                    await Ip(cancellationToken, "route", "replace", "128.0.0.0/1", "dev", name).ConfigureAwait(false);
                }
                else
                {
                    await Ip(cancellationToken, "route", "replace", route.ToString(), "dev", name).ConfigureAwait(false);
                }
            }

            _dataPlane = new GatewayDataPlane(null, new TunPort(_tun), link);
            _dataPlane.Start();
        }
    }

    /// <summary>Moves the device to the welcome's address.</summary>
    public async Task MoveAsync(TunnelWelcome welcome, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(welcome);
        await Ip(cancellationToken, "addr", "flush", "dev", _options.TunName).ConfigureAwait(false);
        await Ip(cancellationToken, "addr", "replace", welcome.AddressWithPrefix, "dev", _options.TunName).ConfigureAwait(false);
    }

    /// <summary>Pins the route to the server (as it is before the tunnel's routes go in) with a host route, so a default
    /// route through the tunnel does not swallow the tunnel's own connection.</summary>
    private async Task KeepServerRouteAsync(CancellationToken cancellationToken)
    {
        var wantsDefault = (_options.Routes ?? []).Any(r => r.Length == 0) || _options.Routes is null;
        if (!wantsDefault)
        {
            return;
        }

        var address = _options.Server.Address;
        if (address is null)
        {
            var addresses = await Dns.GetHostAddressesAsync(_options.Server.Host, AddressFamily.InterNetwork, cancellationToken).ConfigureAwait(false);
            address = addresses.FirstOrDefault();
        }

        if (address is null || IPAddress.IsLoopback(address) || address.AddressFamily != AddressFamily.InterNetwork)
        {
            return;
        }

        var (code, output, _) = await SystemCommand.TryRunAsync("ip", ["-o", "route", "get", address.ToString()], cancellationToken).ConfigureAwait(false);
        var words = output.Split([' ', '\t', '\\'], StringSplitOptions.RemoveEmptyEntries);
        var via = Array.IndexOf(words, "via");
        var dev = Array.IndexOf(words, "dev");
        if (code != 0 || via < 0 || dev < 0 || dev + 1 >= words.Length)
        {
            return; // on a connected network (or no route at all): nothing to keep
        }

        _serverRoute = $"{address}/32";
        await Ip(cancellationToken, "route", "replace", _serverRoute, "via", words[via + 1], "dev", words[dev + 1]).ConfigureAwait(false);
    }

    /// <summary>The tunnel carries IPv4 only: the device gets no IPv6 link-local address and sends no router
    /// solicitations (which the server would count as spoofed).</summary>
    private static void DisableIpv6(string device)
    {
        try
        {
            File.WriteAllText($"/proc/sys/net/ipv6/conf/{device}/disable_ipv6", "1");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // a kernel without IPv6: nothing to disable
        }
    }

    private static Task<string> Ip(CancellationToken cancellationToken, params string[] arguments) =>
        SystemCommand.RunAsync("ip", arguments, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (_dataPlane is not null)
        {
            await _dataPlane.DisposeAsync().ConfigureAwait(false);
        }

        _tun?.Dispose(); // the device and its routes go with it
        if (_serverRoute is not null)
        {
            _ = await SystemCommand.TryRunAsync("ip", ["route", "del", _serverRoute], CancellationToken.None).ConfigureAwait(false);
        }
    }
}
