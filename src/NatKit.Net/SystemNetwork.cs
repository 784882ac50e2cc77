using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using NatKit.Net.Internal;

namespace NatKit.Net;

/// <summary>The real network: System.Net.Sockets and the system clock.</summary>
public sealed class SystemNetwork : INetwork, IDatagramPollerSource, ITcpCongestionControlNetwork, IMulticastNetwork
{
    /// <summary>The one instance; it holds no state of its own.</summary>
    public static SystemNetwork Instance { get; } = new();

    private SystemNetwork()
    {
    }

    public TimeProvider TimeProvider => TimeProvider.System;

    public IReadOnlyList<IPAddress> LocalAddresses
    {
        get
        {
            var result = new List<IPAddress>();
            foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
            {
                if (nic.OperationalStatus is not (OperationalStatus.Up or OperationalStatus.Unknown))
                {
                    continue;
                }

                foreach (var a in nic.GetIPProperties().UnicastAddresses)
                {
                    result.Add(a.Address);
                }
            }

            return result;
        }
    }

    /// <summary>The TCP congestion control algorithms this kernel has loaded (Linux:
    /// <c>net.ipv4.tcp_available_congestion_control</c>); empty where sockets cannot choose one. Root may also name
    /// one the kernel can load as a module.</summary>
    public static IReadOnlyList<string> AvailableCongestionControl =>
        ReadIpv4Setting("tcp_available_congestion_control")?
            .Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];

    /// <summary>The algorithm a TCP socket gets when nobody chooses (Linux: <c>net.ipv4.tcp_congestion_control</c>);
    /// null where it cannot be read.</summary>
    public static string? DefaultCongestionControl => ReadIpv4Setting("tcp_congestion_control")?.Trim();

    private static string? ReadIpv4Setting(string name)
    {
        try
        {
            return File.ReadAllText("/proc/sys/net/ipv4/" + name);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Checks that this process may give a TCP socket the congestion control <paramref name="algorithm"/>
    /// (loaded, and allowed to this user), by setting it on a socket that is never connected.</summary>
    /// <exception cref="NetworkException">The kernel refused the name.</exception>
    public static void CheckCongestionControl(string algorithm)
    {
        ArgumentNullException.ThrowIfNull(algorithm);
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        TcpCongestion.Set(probe, algorithm);
    }

    /// <summary>The addresses of a host name (<see cref="Dns.GetHostAddressesAsync(string, CancellationToken)"/>),
    /// with the resolver's failure translated at the seam.</summary>
    /// <exception cref="NetworkException">The name did not resolve (<see cref="NetworkException.Error"/> says why:
    /// <see cref="SocketError.HostNotFound"/>, <see cref="SocketError.TryAgain"/>, ...).</exception>
    /// <exception cref="ArgumentException">A name the resolver refuses outright (over 255 characters, say).</exception>
    public static async Task<IPAddress[]> ResolveAsync(string host, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(host);
        try
        {
            return await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw new NetworkException(e.SocketErrorCode, $"cannot resolve {host}: {e.Message}", e);
        }
    }

    /// <summary>On Linux, an epoll set over this network's UDP sockets.</summary>
    public bool TryCreatePoller([NotNullWhen(true)] out IDatagramPoller? poller)
    {
        poller = EpollPoller.TryCreate();
        return poller is not null;
    }

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(localEndPoint);
        var socket = new Socket(localEndPoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            if (localEndPoint.AddressFamily == AddressFamily.InterNetworkV6 &&
                localEndPoint.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            socket.Bind(localEndPoint);
            return ValueTask.FromResult<IDatagramSocket>(new SocketDatagram(socket));
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new NetworkException(e.SocketErrorCode, $"cannot bind UDP {localEndPoint}: {e.Message}", e);
        }
    }

    public ValueTask<IMulticastDatagramSocket> BindMulticastUdpAsync(IPEndPoint localEndPoint,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(localEndPoint);
        var socket = new Socket(localEndPoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(localEndPoint);
            var datagram = new SocketDatagram(socket);
            datagram.EnablePacketInformation();
            return ValueTask.FromResult<IMulticastDatagramSocket>(datagram);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new NetworkException(e.SocketErrorCode, $"cannot bind UDP {localEndPoint}: {e.Message}", e);
        }
        catch (NetworkException)
        {
            socket.Dispose();
            throw;
        }
    }

    public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(localEndPoint);
        var socket = new Socket(localEndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (localEndPoint.AddressFamily == AddressFamily.InterNetworkV6 &&
                localEndPoint.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(localEndPoint);
            socket.Listen(backlog);
            return ValueTask.FromResult<IStreamListener>(new SocketStreamListener(socket));
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new NetworkException(e.SocketErrorCode, $"cannot listen on TCP {localEndPoint}: {e.Message}", e);
        }
    }

    public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint,
        IPEndPoint? localEndPoint = null, CancellationToken cancellationToken = default) =>
        ConnectAsync(remoteEndPoint, localEndPoint, null, cancellationToken);

    public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint,
        string congestionControl, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(congestionControl);
        return ConnectAsync(remoteEndPoint, localEndPoint, congestionControl, cancellationToken);
    }

    private static async ValueTask<IStreamConnection> ConnectAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint,
        string? congestionControl, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(remoteEndPoint);
        var socket = new Socket(remoteEndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.NoDelay = true;
            if (congestionControl is not null)
            {
                TcpCongestion.Set(socket, congestionControl); // before the SYN: see ITcpCongestionControlNetwork
            }

            if (localEndPoint is not null)
            {
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(localEndPoint);
            }

            await socket.ConnectAsync(remoteEndPoint, cancellationToken).ConfigureAwait(false);
            return new SocketStreamConnection(socket);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new NetworkException(e.SocketErrorCode, $"cannot connect to {remoteEndPoint}: {e.Message}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
