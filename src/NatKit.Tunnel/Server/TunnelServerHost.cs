using System.Net;
using System.Security.Cryptography.X509Certificates;
using NatKit.Linux;
using NatKit.Nat.Ports;

namespace NatKit.Tunnel.Server;

/// <summary>
/// A whole tunnel server on a Linux machine: the <see cref="TunnelServer"/> (sessions and the NAT engine), a TUN
/// device on its outside, the data-plane thread that pumps the engine between the two, and the Kestrel endpoint.
/// The TUN device is brought up with a host route for each external address, so the kernel hands the answers to those
/// addresses to the engine and routes what the engine sends out like any forwarded packet (the machine must forward:
/// net.ipv4.ip_forward=1, and the network must route the external addresses to it).
/// </summary>
public sealed class TunnelServerHost : IAsyncDisposable
{
    private readonly TunDevice _tun;
    private readonly GatewayDataPlane _dataPlane;
    private TunnelEndpoint? _endpoint;

    private TunnelServerHost(TunnelServer server, TunDevice tun, GatewayDataPlane dataPlane)
    {
        Server = server;
        _tun = tun;
        _dataPlane = dataPlane;
    }

    public TunnelServer Server { get; }

    public GatewayDataPlane DataPlane => _dataPlane;

    /// <summary>The TUN device's name and offloads.</summary>
    public TunDevice Outside => _tun;

    /// <summary>Where the endpoint listens.</summary>
    public IReadOnlyList<string> Urls => _endpoint?.Urls ?? [];

    /// <summary>Opens the outside TUN device <paramref name="tunName"/>, starts the data plane and the endpoint.</summary>
    public static async Task<TunnelServerHost> StartAsync(TunnelServerOptions options, string tunName,
        IReadOnlyList<IPEndPoint> listen, X509Certificate2? certificate, string? control = null,
        TunOffloads offloads = TunOffloads.All, DataPlaneOptions? dataPlane = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var server = new TunnelServer(options);
        TunDevice? tun = null;
        GatewayDataPlane? plane = null;
        try
        {
            tun = TunDevice.Open(new TunOptions(tunName, offloads));
            await SystemCommand.RunAsync("ip", ["link", "set", "dev", tunName, "up"], cancellationToken).ConfigureAwait(false);
            foreach (var external in options.ExternalAddresses)
            {
                await SystemCommand.RunAsync("ip", ["route", "replace", $"{external}/32", "dev", tunName], cancellationToken)
                    .ConfigureAwait(false);
            }

            plane = new GatewayDataPlane(server.Engine, server.Inside, new TunPort(tun), null, dataPlane);
            server.Start(plane, () => plane.EngineNow);
            plane.Start();
            var host = new TunnelServerHost(server, tun, plane);
            host._endpoint = await TunnelEndpoint.StartAsync(server, listen, certificate, control: control, cancellationToken: cancellationToken)
                .ConfigureAwait(false);
            return host;
        }
        catch
        {
            if (plane is not null)
            {
                await plane.DisposeAsync().ConfigureAwait(false);
            }

            tun?.Dispose();
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The NAT's flows, with their sessions.</summary>
    public Task<IReadOnlyList<TunnelFlowInfo>> FlowsAsync() => Server.FlowsAsync();

    /// <summary>Graceful stop: goodbyes to every session (waiting at most <paramref name="timeout"/>), then the
    /// endpoint, the data plane and the device.</summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        await Server.StopAsync(timeout).ConfigureAwait(false);
        if (_endpoint is not null)
        {
            await _endpoint.DisposeAsync().ConfigureAwait(false);
            _endpoint = null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_endpoint is not null)
        {
            await _endpoint.DisposeAsync().ConfigureAwait(false);
        }

        await _dataPlane.DisposeAsync().ConfigureAwait(false);
        _tun.Dispose();
        await Server.DisposeAsync().ConfigureAwait(false);
    }
}
