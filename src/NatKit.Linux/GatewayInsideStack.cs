using System.Globalization;
using System.Net;
using NatKit.Nat.Ports;
using NatKit.Net;
using NatKit.Packets;

namespace NatKit.Linux;

/// <summary>
/// A gateway's own host on its inside address, for the services it offers the LAN over TCP and multicast (UPnP's
/// HTTP and SSDP): a TUN device in the gateway's namespace that holds the inside address, so the kernel there serves
/// them with ordinary sockets (<see cref="Network"/>). The data plane hands it what the LAN sends to the inside
/// address (after <see cref="InsideUdpServices"/>, which answer NAT-PMP and PCP themselves) and the LAN's multicast;
/// what the kernel sends out of the TUN (answers, announcements) goes to the inside link. Nothing from the outside
/// link ever reaches it.
/// </summary>
public sealed class GatewayInsideStack : IAsyncDisposable
{
    private readonly Gateway _gateway;
    private readonly TunDevice _tun;
    private readonly Ipv4Address _address;
    private readonly Thread _reader;
    private volatile bool _stopping;
    private long _delivered;
    private long _sent;
    private long _dropped;

    private GatewayInsideStack(Gateway gateway, TunDevice tun, Ipv4Address address, string? networkNamespace)
    {
        _gateway = gateway;
        _tun = tun;
        _address = address;
        Namespace = networkNamespace;
        Network = networkNamespace is null ? SystemNetwork.Instance : new NamespaceNetwork(networkNamespace);
        _reader = new Thread(ReadLoop) { IsBackground = true, Name = "natkit inside stack " + tun.Name };
    }

    /// <summary>The namespace the TUN and the services' sockets are in (null: this process's).</summary>
    public string? Namespace { get; }

    /// <summary>Where the services bind: the real network in the gateway's namespace.</summary>
    public INetwork Network { get; }

    /// <summary>The gateway's inside address, which the TUN holds.</summary>
    public IPAddress Address => _address.ToIPAddress();

    /// <summary>Packets from the LAN handed to the kernel; packets the kernel sent to the LAN; packets dropped
    /// (GSO super-packets, which control traffic never is, or ones the TUN refused).</summary>
    public (long Delivered, long Sent, long Dropped) Counters =>
        (Interlocked.Read(ref _delivered), Interlocked.Read(ref _sent), Interlocked.Read(ref _dropped));

    /// <summary>
    /// Creates the TUN <paramref name="tunName"/> in <paramref name="networkNamespace"/> (null: this process's), gives
    /// it the gateway's inside address and prefix, and has the data plane divert to it.
    /// </summary>
    public static async Task<GatewayInsideStack> StartAsync(Gateway gateway, string? networkNamespace,
        string tunName = "nkself", CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(gateway);
        var config = gateway.Engine.Config;
        var address = config.EffectiveInsideAddress;
        var prefix = config.InsidePrefixes.FirstOrDefault(p => p.Contains(address));
        var length = prefix.Length == 0 ? 32 : prefix.Length;
        var options = new TunOptions(tunName, TunOffloads.None);
        var tun = networkNamespace is null ? TunDevice.Open(options) : TunDevice.OpenIn(networkNamespace, options);
        try
        {
            string[] ns = networkNamespace is null ? [] : ["-n", networkNamespace];
            await SystemCommand.RunAsync("ip", [.. ns, "addr", "add",
                string.Create(CultureInfo.InvariantCulture, $"{address}/{length}"), "dev", tun.Name], cancellationToken)
                .ConfigureAwait(false);
            await SystemCommand.RunAsync("ip", [.. ns, "link", "set", tun.Name, "up"], cancellationToken)
                .ConfigureAwait(false);
            await new TunLink(networkNamespace, tun.Name).WaitUntilUpAsync(TimeSpan.FromSeconds(5), cancellationToken)
                .ConfigureAwait(false);
        }
        catch
        {
            tun.Dispose();
            throw;
        }

        var stack = new GatewayInsideStack(gateway, tun, address, networkNamespace);
        stack._reader.Start();
        await gateway.DataPlane.InvokeAsync(() =>
        {
            gateway.DataPlane.Pump.InsideLocal = stack.Deliver;
            return true;
        }).ConfigureAwait(false);
        return stack;
    }

    /// <summary>On the data-plane thread: takes packets to the inside address and multicast, with their checksums
    /// completed (the LAN's kernel may leave them to the TUN's offload).</summary>
    private bool Deliver(Span<byte> packet, in VirtioNetHeader offload)
    {
        if (packet.Length < Ipv4Field.MinHeaderLength || packet[0] >> 4 != 4)
        {
            return false;
        }

        var destination = Ipv4Address.Read(packet[Ipv4Field.Destination..]);
        if (destination != _address && !destination.IsMulticast)
        {
            return false;
        }

        if (offload.IsGso || !CompleteChecksum(packet, offload) || !_tun.Write(packet))
        {
            Interlocked.Increment(ref _dropped);
            return true;
        }

        Interlocked.Increment(ref _delivered);
        return true;
    }

    private static bool CompleteChecksum(Span<byte> packet, in VirtioNetHeader offload)
    {
        if (!offload.NeedsChecksumCompletion)
        {
            return true;
        }

        if (!Ipv4Packet.TryParse(packet, out var ip))
        {
            return false;
        }

        switch (ip.Protocol)
        {
            case IpProtocol.Tcp when TcpSegment.TryParse(ip.Payload, out var tcp):
                tcp.FillChecksum(ip.Source, ip.Destination);
                return true;
            case IpProtocol.Udp when UdpDatagram.TryParse(ip.Payload, out var udp):
                udp.FillChecksum(ip.Source, ip.Destination);
                return true;
            default:
                return false;
        }
    }

    /// <summary>The kernel's packets out of the TUN go to the inside link, written on the data-plane thread.</summary>
    private void ReadLoop()
    {
        var buffer = new byte[65536];
        while (!_stopping)
        {
            int n;
            try
            {
                if (!_tun.WaitReadable(200))
                {
                    continue;
                }

                n = _tun.Read(buffer);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                return;
            }

            if (n < Ipv4Field.MinHeaderLength || buffer[0] >> 4 != 4)
            {
                continue; // nothing, or IPv6 (the LAN is IPv4 here)
            }

            var packet = buffer.AsSpan(0, n).ToArray();
            _ = _gateway.DataPlane.InvokeAsync(() =>
            {
                if (_gateway.DataPlane.Pump.WriteInside(packet))
                {
                    Interlocked.Increment(ref _sent);
                }
                else
                {
                    Interlocked.Increment(ref _dropped);
                }

                return true;
            });
        }
    }

    /// <summary>Stops diverting, stops the reader and removes the TUN (closing it removes a device it created).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        try
        {
            await _gateway.DataPlane.InvokeAsync(() =>
            {
                _gateway.DataPlane.Pump.InsideLocal = null;
                return true;
            }).ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
            // the gateway stopped first
        }

        _reader.Join();
        _tun.Dispose();
    }
}
