using System.Net;

namespace NatKit.Net;

/// <summary>
/// Optional capability of a TCP connection or listener: which congestion control algorithm its sends use (Linux
/// <c>TCP_CONGESTION</c>). <see cref="SystemNetwork"/>'s TCP sockets offer it; a listener passes its choice on to
/// every connection it accepts. A proxy that carries bulk data sets it the way HAProxy's <c>cc</c> setting does:
/// BBR's pacing, for one, costs a loopback or LAN leg more than it buys there.
/// </summary>
public interface ITcpCongestionControl
{
    /// <summary>The algorithm in use (e.g. <c>cubic</c>), or null when it cannot be read.</summary>
    string? CongestionControl { get; }

    /// <summary>Chooses the algorithm by its kernel name. On a connection already established this changes the
    /// algorithm but not everything the old one set up: a connection that started under BBR keeps pacing its
    /// sends. Choose before the first packet (on the listener, or with
    /// <see cref="ITcpCongestionControlNetwork"/>) where that matters.</summary>
    /// <exception cref="NetworkException">The kernel refused it: not available (see
    /// <see cref="SystemNetwork.AvailableCongestionControl"/>), or not allowed to an unprivileged process
    /// (<c>net.ipv4.tcp_allowed_congestion_control</c>).</exception>
    void SetCongestionControl(string algorithm);
}

/// <summary>
/// Optional capability of an <see cref="INetwork"/>: open a TCP connection whose congestion control is chosen before
/// its first packet, so it starts and stays as that algorithm would have it (a socket switched away from BBR after
/// connecting keeps BBR's pacing, and with it most of BBR's cost).
/// </summary>
public interface ITcpCongestionControlNetwork
{
    /// <summary>As <see cref="INetwork.ConnectTcpAsync"/>, with <paramref name="congestionControl"/> set first.</summary>
    /// <exception cref="NetworkException">The kernel refused the name, or the connection failed.</exception>
    ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint,
        string congestionControl, CancellationToken cancellationToken = default);
}
