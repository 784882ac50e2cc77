using System.Net;

namespace NatKit.Net;

/// <summary>What <see cref="TcpConnectionLimits.TryAdmit"/> decided for a new connection.</summary>
public enum TcpAdmission
{
    Admitted,

    /// <summary>The server holds its total cap of connections already.</summary>
    TotalLimit,

    /// <summary>The source address holds its per-address cap of connections already.</summary>
    AddressLimit,
}

/// <summary>
/// Counts the TCP and TLS client connections a STUN or TURN server holds, in total and per source IP address,
/// and refuses one over either cap. Admit on accept, <see cref="Release"/> exactly once when an admitted
/// connection ends. The per-address table holds only addresses with a connection open, so it is bounded by the
/// total cap. With <see cref="TcpConnectionWatchdog"/> it is the connection discipline both servers share.
/// </summary>
public sealed class TcpConnectionLimits(int total, int perAddress)
{
    /// <summary>The longest due time a system timer takes (2^32 - 2 ms): the most a handshake window or an idle
    /// timeout may be.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private readonly Lock _gate = new();
    private readonly Dictionary<IPAddress, int> _perAddress = [];
    private int _count;

    public int Count => Volatile.Read(ref _count);

    /// <summary>
    /// Checks the four settings of the discipline, as a server's options name them (<c>MaxTcpConnections</c>,
    /// <c>MaxTcpConnectionsPerAddress</c>, <c>TcpHandshakeTimeout</c>, <c>TcpIdleTimeout</c>); throws
    /// <see cref="ArgumentException"/> with one sentence naming the bad one.
    /// </summary>
    public static void Validate(int total, int perAddress, TimeSpan handshakeTimeout, TimeSpan idleTimeout)
    {
        if (total < 1)
        {
            throw new ArgumentException($"MaxTcpConnections ({total}) must be at least 1.", "MaxTcpConnections");
        }

        if (perAddress < 1 || perAddress > total)
        {
            throw new ArgumentException(
                $"MaxTcpConnectionsPerAddress ({perAddress}) must be 1..MaxTcpConnections ({total}).",
                "MaxTcpConnectionsPerAddress");
        }

        // Each is a due time of the connection's watchdog timer: a system timer refuses more than 2^32 - 2 ms
        // (49.7 days), and would throw on the first connection (the idle one from a timer callback, ending the
        // process), so a longer one is a configuration mistake here, not later.
        if (handshakeTimeout <= TimeSpan.Zero || handshakeTimeout > MaxTimeout)
        {
            throw new ArgumentException(
                $"TcpHandshakeTimeout must be positive and at most {MaxTimeout.TotalSeconds:0} s.", "TcpHandshakeTimeout");
        }

        if (idleTimeout <= TimeSpan.Zero || idleTimeout > MaxTimeout)
        {
            throw new ArgumentException(
                $"TcpIdleTimeout must be positive and at most {MaxTimeout.TotalSeconds:0} s.", "TcpIdleTimeout");
        }
    }

    public TcpAdmission TryAdmit(IPAddress source)
    {
        source = Normalize(source);
        lock (_gate)
        {
            if (_count >= total)
            {
                return TcpAdmission.TotalLimit;
            }

            var held = _perAddress.GetValueOrDefault(source);
            if (held >= perAddress)
            {
                return TcpAdmission.AddressLimit;
            }

            _perAddress[source] = held + 1;
            _count++;
            return TcpAdmission.Admitted;
        }
    }

    public void Release(IPAddress source)
    {
        source = Normalize(source);
        lock (_gate)
        {
            if (!_perAddress.TryGetValue(source, out var held))
            {
                return;
            }

            if (held <= 1)
            {
                _perAddress.Remove(source);
            }
            else
            {
                _perAddress[source] = held - 1;
            }

            _count--;
        }
    }

    /// <summary>A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: the same host either way.</summary>
    private static IPAddress Normalize(IPAddress a) => a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a;
}
