using System.Net;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Packets;
using static NatKit.Lab.Tests.LabFixture;

namespace NatKit.Lab.Tests;

/// <summary>A datagram's own hop limit (<see cref="IHopLimitDatagramSocket"/>) on the lab's sockets: a NAT router
/// forwards it only with a hop to spare, so TTL 2 opens the NAT's mapping and TTL 1 does not.</summary>
public sealed class HopLimitTests
{
    [Fact]
    public void HopLimit_OneDiesAtTheNat_TwoCrossesIt_AndOpensTheMapping()
    {
        var lab = TwoHomes(NatPresets.PortRestrictedCone, NatPresets.PortRestrictedCone);
        var nat = lab.Router("nat-a");
        lab.Run(async () =>
        {
            var server = await Bind(lab.Host("server"), Server1, 3478);
            var alice = await Bind(lab.Host("alice"), 40000);
            var limited = Assert.IsAssignableFrom<IHopLimitDatagramSocket>(alice);
            var to = new IPEndPoint(Server1, 3478);
            var inside = new NatEndpoint(Ipv4Address.Parse("192.168.1.10"), 40000);
            var remote = new NatEndpoint(Ipv4Address.FromIPAddress(Server1), 3478);

            Assert.Equal(3, await limited.SendToAsync("ttl"u8.ToArray(), to, 1));
            Assert.Null(await ReceiveOrTimeout(server, lab.TimeProvider, TimeSpan.FromSeconds(1)));
            Assert.Equal(1, nat.Engine.DropCount(NatDropReason.TtlExpired));
            Assert.Null(nat.Engine.FindExternal(IpProtocol.Udp, inside, remote));

            await limited.SendToAsync("ttl"u8.ToArray(), to, 2);
            var got = await ReceiveOrTimeout(server, lab.TimeProvider, TimeSpan.FromSeconds(1));
            Assert.NotNull(got);
            Assert.NotNull(nat.Engine.FindExternal(IpProtocol.Udp, inside, remote));
            Assert.Throws<ArgumentOutOfRangeException>(() => limited.SendToAsync("x"u8.ToArray(), to, 0));
        });
    }

    [Fact]
    public void HopLimit_MultiplexerSubSocket_PassesItToTheSharedSocket()
    {
        var lab = TwoHomes(NatPresets.PortRestrictedCone, NatPresets.PortRestrictedCone);
        var nat = lab.Router("nat-a");
        lab.Run(async () =>
        {
            var server = await Bind(lab.Host("server"), Server1, 3478);
            await using var mux = new DatagramMultiplexer(await Bind(lab.Host("alice"), 40000));
            await using var sub = mux.CreateSocket(static (_, _) => true);
            await sub.SendToAsync("ttl"u8.ToArray(), new IPEndPoint(Server1, 3478), 1);
            Assert.Null(await ReceiveOrTimeout(server, lab.TimeProvider, TimeSpan.FromMilliseconds(500)));
            Assert.Equal(1, nat.Engine.DropCount(NatDropReason.TtlExpired));
        });
    }
}
