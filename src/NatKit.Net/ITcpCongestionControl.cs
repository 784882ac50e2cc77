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

    /// <summary>Chooses the algorithm by its kernel name.</summary>
    /// <exception cref="NetworkException">The kernel refused it: not available (see
    /// <see cref="SystemNetwork.AvailableCongestionControl"/>), or not allowed to an unprivileged process
    /// (<c>net.ipv4.tcp_allowed_congestion_control</c>).</exception>
    void SetCongestionControl(string algorithm);
}
