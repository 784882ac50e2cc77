using System.Net.Sockets;
using NatKit.Net;
using NatKit.Packets;

namespace NatKit.Lab.Internal;

/// <summary>TCP on a lab host.</summary>
internal sealed class LabTcpStack(LabHost host)
{
    public LabHost Host { get; } = host;

    public IStreamListener Listen(Ipv4Address address, int port, int backlog) =>
        throw NotSupported();

    public ValueTask<IStreamConnection> ConnectAsync(Ipv4Address remote, ushort remotePort, Ipv4Address local,
        int localPort, CancellationToken cancellationToken) =>
        throw NotSupported();

    public void Receive(Ipv4Address source, Ipv4Address destination, TcpSegment segment)
    {
        _ = source;
        _ = destination;
        _ = segment;
    }

    private NetworkException NotSupported() => new(SocketError.OperationNotSupported,
        $"TCP is not available on lab host {Host.Name} yet: the lab carries UDP and ICMP");
}
