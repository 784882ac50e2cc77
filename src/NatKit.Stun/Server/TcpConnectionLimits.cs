using System.Net;

namespace NatKit.Turn.Server;

/// <summary>What <see cref="TcpConnectionLimits.TryAdmit"/> decided for a new connection.</summary>
internal enum TcpAdmission
{
    Admitted,

    /// <summary>The server holds <see cref="TurnServerOptions.MaxTcpConnections"/> already.</summary>
    TotalLimit,

    /// <summary>The source address holds <see cref="TurnServerOptions.MaxTcpConnectionsPerAddress"/> already.</summary>
    AddressLimit,
}

/// <summary>
/// Counts the TCP and TLS client connections the server holds, in total and per source IP address, and
/// refuses one over either cap. Admit on accept, <see cref="Release"/> exactly once when an admitted connection
/// ends. The per-address table holds only addresses with a connection open, so it is bounded by the total cap.
/// </summary>
internal sealed class TcpConnectionLimits(int total, int perAddress)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<IPAddress, int> _perAddress = [];
    private int _count;

    public int Count => Volatile.Read(ref _count);

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
