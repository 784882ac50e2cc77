using System.Net;
using NatKit.Nat;
using static NatKit.Lab.Tests.LabFixture;

namespace NatKit.Lab.Tests;

/// <summary>A datagram larger than the receive buffer is dropped, not cut short, as on the real network
/// (NatKit.Net's BlockingDatagramSocketTests pin the same there), so protocol code sees one rule on both.</summary>
public sealed class UdpReceiveBufferTests
{
    [Fact]
    public void Oversize_Queued_IsDroppedAndTheNextFittingDatagramArrives()
    {
        var lab = TwoHomes(NatPresets.FullCone, NatPresets.FullCone);
        lab.Run(async () =>
        {
            var server = lab.Host("server");
            var s = await Bind(server, Server1, 3478);
            var alice = await Bind(lab.Host("alice"), 40000);
            await alice.SendToAsync(new byte[100], new IPEndPoint(Server1, 3478));
            await alice.SendToAsync(new byte[] { 1, 2, 3 }, new IPEndPoint(Server1, 3478));
            await Task.Delay(TimeSpan.FromMilliseconds(100), lab.TimeProvider); // both queued before the receive

            var buffer = new byte[50];
            var r = await s.ReceiveFromAsync(buffer);
            Assert.Equal(3, r.Length);
            Assert.Equal(new byte[] { 1, 2, 3 }, buffer[..3]);
            Assert.Equal(1, server.OversizeDatagramDrops);
        });
    }

    [Fact]
    public void Oversize_ArrivingWhileAReceiveWaits_IsDroppedAndTheReceiveGoesOnWaiting()
    {
        var lab = TwoHomes(NatPresets.FullCone, NatPresets.FullCone);
        lab.Run(async () =>
        {
            var server = lab.Host("server");
            var s = await Bind(server, Server1, 3478);
            var alice = await Bind(lab.Host("alice"), 40000);
            var buffer = new byte[50];
            var pending = s.ReceiveFromAsync(buffer).AsTask(); // waits before anything arrives

            await alice.SendToAsync(new byte[100], new IPEndPoint(Server1, 3478));
            await Task.Delay(TimeSpan.FromMilliseconds(100), lab.TimeProvider);
            Assert.False(pending.IsCompleted); // the big one did not end the receive
            Assert.Equal(1, server.OversizeDatagramDrops);

            await alice.SendToAsync(new byte[] { 9 }, new IPEndPoint(Server1, 3478));
            var r = await pending;
            Assert.Equal(1, r.Length);
            Assert.Equal(9, buffer[0]);
        });
    }

    [Fact]
    public void ExactFit_IsDelivered()
    {
        var lab = TwoHomes(NatPresets.FullCone, NatPresets.FullCone);
        lab.Run(async () =>
        {
            var server = lab.Host("server");
            var s = await Bind(server, Server1, 3478);
            var alice = await Bind(lab.Host("alice"), 40000);
            await alice.SendToAsync(new byte[50], new IPEndPoint(Server1, 3478));
            var r = await s.ReceiveFromAsync(new byte[50]);
            Assert.Equal(50, r.Length);
            Assert.Equal(0, server.OversizeDatagramDrops);
        });
    }
}
