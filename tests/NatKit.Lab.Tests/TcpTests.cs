using System.Net;
using System.Net.Sockets;
using NatKit.Nat;
using NatKit.Net;
using static NatKit.Lab.Tests.LabFixture;

namespace NatKit.Lab.Tests;

public sealed class TcpTests
{
    [Fact]
    public void Tcp_ConnectsThroughTheNat_AndCarriesABulkStreamBothWays_OverALossyLink()
    {
        var lab = TwoHomes(NatPresets.RfcRecommended, NatPresets.FullCone);
        lab.Host("alice").Link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(10), Loss = 0.05, Reorder = 0.05 };
        var data = new byte[200_000];
        new Random(3).NextBytes(data);
        var (echoed, seenFrom) = lab.Run(async () =>
        {
            await using var listener = await lab.Host("server").ListenTcpAsync(new IPEndPoint(Server1, 8080));
            async Task<IPEndPoint> Echo()
            {
                await using var c = await listener.AcceptAsync();
                var buffer = new byte[8192];
                int n;
                while ((n = await c.Stream.ReadAsync(buffer)) > 0)
                {
                    await c.Stream.WriteAsync(buffer.AsMemory(0, n));
                }

                c.ShutdownSend();
                return c.RemoteEndPoint;
            }

            var server = Echo();
            await using var client = await lab.Host("alice").ConnectTcpAsync(new IPEndPoint(Server1, 8080));
            await client.Stream.WriteAsync(data);
            client.ShutdownSend();
            var received = new MemoryStream();
            await client.Stream.CopyToAsync(received);
            return (received.ToArray(), await server);
        });

        Assert.Equal(data, echoed);
        Assert.Equal(IPAddress.Parse("198.51.100.1"), seenFrom.Address);
        Assert.True(lab.Stats.Lost > 0, "the link lost packets, so retransmission was exercised");
    }

    [Fact]
    public void Tcp_NatTracksTheConnection_AndDropsAnUnsolicitedSyn()
    {
        var lab = TwoHomes(NatPresets.RfcRecommended, NatPresets.FullCone);
        var nat = lab.Router("nat-a");
        lab.Run(async () =>
        {
            await using var listener = await lab.Host("server").ListenTcpAsync(new IPEndPoint(Server1, 443));
            var accepted = listener.AcceptAsync();
            await using var c = await lab.Host("alice").ConnectTcpAsync(new IPEndPoint(Server1, 443));
            await using var s = await accepted;
            var flow = Assert.Single(nat.Engine.SnapshotFlows(), f => f.Protocol == NatKit.Packets.IpProtocol.Tcp);
            Assert.Equal(NatTcpState.Established, flow.TcpState);

            // From outside, nobody can open a connection to alice's LAN (RFC 5382 REQ-4: unsolicited SYN).
            await using var aliceListener = await lab.Host("alice").ListenTcpAsync(new IPEndPoint(IPAddress.Any, 22));
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10), lab.TimeProvider);
            await Assert.ThrowsAnyAsync<Exception>(async () =>
                await lab.Host("server").ConnectTcpAsync(new IPEndPoint(IPAddress.Parse("198.51.100.1"), 22), null, cts.Token));
        });
        Assert.True(nat.Engine.DropCount(NatDropReason.UnsolicitedSyn) > 0 || nat.Engine.DropCount(NatDropReason.NoMapping) > 0);
    }

    [Fact]
    public void Tcp_ClosedPort_IsRefused()
    {
        var lab = TwoHomes(NatPresets.FullCone, NatPresets.FullCone);
        var e = lab.Run(async () => await Assert.ThrowsAsync<NetworkException>(async () =>
            await lab.Host("alice").ConnectTcpAsync(new IPEndPoint(Server1, 9))));
        Assert.Equal(SocketError.ConnectionRefused, e.Error);
    }
}
