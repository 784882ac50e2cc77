using NatKit.Packets;
using static NatKit.Nat.Tests.NatHarness;

namespace NatKit.Nat.Tests;

/// <summary><see cref="NatEngine.ForgetHost"/>: what a tunnel server does before an inside address serves another
/// client.</summary>
public sealed class ForgetHostTests
{
    [Fact]
    public void ForgetHost_RemovesThatHostsFlowsNow_SoNoAnswerReachesTheAddressAnymore_AndKeepsOthers()
    {
        using var h = new NatHarness(NatPresets.FullCone, tweak: c => c with
        {
            StaticForwards = [new StaticForward(IpProtocol.Udp, 7000, Ipv4Address.Parse("192.168.1.10"), 7000)],
        });
        var udp = h.Out("192.168.1.10:4000", "198.51.100.1:53").Source;
        h.Tcp(NatDirection.Outbound, "192.168.1.10:5000", "198.51.100.1:80", TcpFlags.Syn);
        h.Out("192.168.1.11:4000", "198.51.100.1:53");
        Assert.Equal(3, h.Nat.SessionCount);

        Assert.Equal(2, h.Nat.ForgetHost(Ipv4Address.Parse("192.168.1.10")));

        var flows = h.Nat.SnapshotFlows();
        Assert.Equal("192.168.1.11", Assert.Single(flows).Internal.Address.ToString());
        Assert.Equal(NatDropReason.NoMapping, h.In("198.51.100.1:53", udp.ToString()).Verdict.Reason); // full cone, yet gone
        Assert.True(h.In("198.51.100.7:1", $"{Ext1}:7000").Forwarded); // the static forward stays
        Assert.Null(h.Nat.CheckInvariants());
        Assert.Equal(0, h.Nat.ForgetHost(Ipv4Address.Parse("192.168.1.10"))); // the forward's session is not forgotten
    }
}
