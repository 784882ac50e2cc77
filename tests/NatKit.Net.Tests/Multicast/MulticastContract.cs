using System.Net;
using System.Text;
using NatKit.Net;

namespace NatKit.Net.Tests.Multicast;

/// <summary>Two hosts' networks and the address of the interface they share (loopback, or a lab segment).</summary>
public sealed record MulticastHosts(IMulticastNetwork A, IPAddress AddressA, IMulticastNetwork B, IPAddress AddressB);

/// <summary>
/// <see cref="IMulticastNetwork"/>'s contract, written once and compiled into two test projects: NatKit.Net.Tests
/// runs it on <see cref="SystemNetwork"/> over loopback, NatKit.Lab.Tests between two hosts of a lab segment.
/// Group and ports are chosen so parallel runs on one machine do not meet: the listener binds an ephemeral port.
/// </summary>
public abstract class MulticastContract
{
    /// <summary>An administratively scoped group (RFC 2365) no real service uses.</summary>
    protected static readonly IPAddress Group = IPAddress.Parse("239.255.77.77");

    protected abstract Task Run(Func<MulticastHosts, Task> body);

    /// <summary>Bounds a wait that should end at once (the real network; the lab fails a stuck run by itself).</summary>
    protected abstract Task<T> Bounded<T>(Task<T> task);

    private static async Task<IMulticastDatagramSocket> Listener(IMulticastNetwork network, IPAddress iface, int port)
    {
        var socket = await network.BindMulticastUdpAsync(new IPEndPoint(IPAddress.Any, port));
        socket.JoinGroup(Group, iface);
        return socket;
    }

    private static async Task<IMulticastDatagramSocket> Sender(IMulticastNetwork network, IPAddress iface)
    {
        var socket = await network.BindMulticastUdpAsync(new IPEndPoint(iface, 0));
        socket.SetMulticastSend(iface, timeToLive: 1);
        return socket;
    }

    [Fact]
    public Task AJoinedSocket_ReceivesTheGroupsDatagram_WithTheGroupAsDestination_AndTheSendersAddress()
    {
        return Run(async h =>
        {
            await using var listener = await Listener(h.A, h.AddressA, 0);
            await using var sender = await Sender(h.B, h.AddressB);
            await sender.SendToAsync("M-SEARCH"u8.ToArray(), new IPEndPoint(Group, listener.LocalEndPoint.Port));

            var buffer = new byte[64];
            var got = await Bounded(listener.ReceiveMessageFromAsync(buffer).AsTask());
            Assert.Equal("M-SEARCH", Encoding.ASCII.GetString(buffer, 0, got.Length));
            Assert.Equal(Group, got.Destination);
            Assert.True(got.IsMulticast);
            Assert.Equal(h.AddressB, got.RemoteEndPoint.Address);
            Assert.Equal(sender.LocalEndPoint.Port, got.RemoteEndPoint.Port);
        });
    }

    [Fact]
    public Task AUnicastDatagram_ReportsTheLocalAddressAsDestination_AndTheAnswerGoesBackUnicast()
    {
        return Run(async h =>
        {
            await using var listener = await Listener(h.A, h.AddressA, 0);
            await using var sender = await Sender(h.B, h.AddressB);
            await sender.SendToAsync("hello"u8.ToArray(), new IPEndPoint(h.AddressA, listener.LocalEndPoint.Port));

            var buffer = new byte[64];
            var got = await Bounded(listener.ReceiveMessageFromAsync(buffer).AsTask());
            Assert.Equal(h.AddressA, got.Destination);
            Assert.False(got.IsMulticast);

            await listener.SendToAsync("answer"u8.ToArray(), got.RemoteEndPoint);
            var answer = await Bounded(sender.ReceiveMessageFromAsync(buffer).AsTask());
            Assert.Equal("answer", Encoding.ASCII.GetString(buffer, 0, answer.Length));
            Assert.Equal(h.AddressB, answer.Destination);
        });
    }

    [Fact]
    public Task TwoSocketsSharingAPort_BothReceiveTheGroupsDatagram()
    {
        return Run(async h =>
        {
            await using var first = await Listener(h.A, h.AddressA, 0);
            await using var second = await Listener(h.A, h.AddressA, first.LocalEndPoint.Port);
            await using var sender = await Sender(h.B, h.AddressB);
            await sender.SendToAsync("NOTIFY"u8.ToArray(), new IPEndPoint(Group, first.LocalEndPoint.Port));

            var buffer = new byte[64];
            Assert.Equal(6, (await Bounded(first.ReceiveMessageFromAsync(buffer).AsTask())).Length);
            Assert.Equal(6, (await Bounded(second.ReceiveMessageFromAsync(buffer).AsTask())).Length);
        });
    }

    [Fact]
    public Task APlainReceive_OnAMulticastSocket_StillWorks()
    {
        return Run(async h =>
        {
            await using var listener = await Listener(h.A, h.AddressA, 0);
            await using var sender = await Sender(h.B, h.AddressB);
            await sender.SendToAsync("plain"u8.ToArray(), new IPEndPoint(Group, listener.LocalEndPoint.Port));
            var buffer = new byte[64];
            var got = await Bounded(listener.ReceiveFromAsync(buffer).AsTask());
            Assert.Equal(5, got.Length);
            Assert.Equal(h.AddressB, got.RemoteEndPoint.Address);
        });
    }

    [Fact]
    public Task JoiningANonGroupAddress_IsRefusedWithANetworkException()
    {
        return Run(async h =>
        {
            await using var socket = await h.A.BindMulticastUdpAsync(new IPEndPoint(IPAddress.Any, 0));
            Assert.Throws<NetworkException>(() => socket.JoinGroup(IPAddress.Parse("192.0.2.1"), h.AddressA));
        });
    }
}
