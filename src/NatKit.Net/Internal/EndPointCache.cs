using System.Net;
using System.Net.Sockets;

namespace NatKit.Net.Internal;

/// <summary>
/// Maps between the kernel's <see cref="SocketAddress"/> and <see cref="IPEndPoint"/> without allocating for
/// peers seen before. Bounded: when full it starts over, so a scan of many sources costs memory once.
/// </summary>
internal sealed class EndPointCache
{
    internal const int Capacity = 4096;

    private readonly Dictionary<SocketAddress, IPEndPoint> _toEndPoint = [];
    private readonly Dictionary<IPEndPoint, SocketAddress> _toSocketAddress = [];
    private readonly Lock _gate = new();

    public IPEndPoint GetEndPoint(SocketAddress received)
    {
        lock (_gate)
        {
            if (_toEndPoint.TryGetValue(received, out var known))
            {
                return known;
            }

            if (_toEndPoint.Count >= Capacity)
            {
                _toEndPoint.Clear();
            }

            var key = new SocketAddress(received.Family, received.Size);
            received.Buffer.Span[..received.Size].CopyTo(key.Buffer.Span);
            var endPoint = Unmap((IPEndPoint)new IPEndPoint(IPAddress.Any, 0).Create(key));
            _toEndPoint[key] = endPoint;
            return endPoint;
        }
    }

    /// <summary>The endpoint as NatKit shows it: an IPv4-mapped IPv6 address (a dual-mode socket's view of an IPv4
    /// peer) as plain IPv4.</summary>
    internal static IPEndPoint Unmap(IPEndPoint e) =>
        e.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(e.Address.MapToIPv4(), e.Port) : e;

    public SocketAddress GetSocketAddress(IPEndPoint endPoint, AddressFamily socketFamily)
    {
        lock (_gate)
        {
            if (_toSocketAddress.TryGetValue(endPoint, out var known))
            {
                return known;
            }

            if (_toSocketAddress.Count >= Capacity)
            {
                _toSocketAddress.Clear();
            }

            var target = endPoint;
            if (socketFamily == AddressFamily.InterNetworkV6 && endPoint.AddressFamily == AddressFamily.InterNetwork)
            {
                target = new IPEndPoint(endPoint.Address.MapToIPv6(), endPoint.Port);
            }

            var address = target.Serialize();
            _toSocketAddress[new IPEndPoint(endPoint.Address, endPoint.Port)] = address;
            return address;
        }
    }
}
