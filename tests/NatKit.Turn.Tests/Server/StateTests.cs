using System.Net;
using NatKit.Net;
using NatKit.Stun.Server;
using NatKit.Turn.Server;

namespace NatKit.Turn.Tests.Server;

public class RelayPortAllocatorTests
{
    [Fact]
    public void Takes_EveryPortOnce_ThenRunsOut()
    {
        var a = new RelayPortAllocator(50000, 50009, new Random(1));
        var seen = new HashSet<int>();
        for (var i = 0; i < 10; i++)
        {
            Assert.True(a.TryTake(false, false, out var p));
            Assert.InRange(p, 50000, 50009);
            Assert.True(seen.Add(p));
        }

        Assert.False(a.TryTake(false, false, out _));
        a.Release(50004);
        Assert.True(a.TryTake(false, false, out var again));
        Assert.Equal(50004, again);
    }

    [Fact]
    public void Rfc8656_14_6_EvenPort_WithReserve_TakesAnEvenPortAndTheNext()
    {
        var a = new RelayPortAllocator(50001, 50010, new Random(2));
        Assert.True(a.TryTake(true, true, out var p));
        Assert.Equal(0, p % 2);
        Assert.True(a.IsUsed(p + 1));
        Assert.False(a.TryTakeSpecific(p + 1));
        a.Release(p + 1);
        Assert.True(a.TryTakeSpecific(p + 1));
    }

    [Fact]
    public void RandomStart_SpreadsPorts()
    {
        var firsts = new HashSet<int>();
        for (var i = 0; i < 20; i++)
        {
            var a = new RelayPortAllocator(40000, 49999, new Random(i));
            a.TryTake(false, false, out var p);
            firsts.Add(p);
        }

        Assert.True(firsts.Count > 15);
    }
}

public class PeerBindingsTests
{
    private static readonly IPEndPoint PeerA = new(IPAddress.Parse("8.8.8.8"), 1000);
    private static readonly IPEndPoint PeerA2 = new(IPAddress.Parse("8.8.8.8"), 2000);
    private static readonly IPEndPoint PeerB = new(IPAddress.Parse("1.1.1.1"), 1000);

    [Fact]
    public void Rfc8656_9_PermissionIsPerAddress_AndExpires()
    {
        var t = new PeerBindings(4, 4);
        Assert.False(t.HasPermission(PeerA.Address, 0));
        Assert.True(t.TryAddPermission(PeerA.Address, 300, 0));
        Assert.True(t.HasPermission(PeerA2.Address, 299));
        Assert.True(t.HasPermission(IPAddress.Parse("::ffff:8.8.8.8"), 10));
        Assert.False(t.HasPermission(PeerA.Address, 300));
        Assert.Equal(0, t.PermissionCount);
    }

    [Fact]
    public void Permissions_AreCapped_ButExpiredOnesMakeRoom()
    {
        var t = new PeerBindings(2, 4);
        Assert.True(t.TryAddPermission(IPAddress.Parse("8.8.8.1"), 100, 0));
        Assert.True(t.TryAddPermission(IPAddress.Parse("8.8.8.2"), 200, 0));
        Assert.False(t.TryAddPermission(IPAddress.Parse("8.8.8.3"), 300, 50));
        Assert.True(t.TryAddPermission(IPAddress.Parse("8.8.8.2"), 300, 50)); // refresh is fine
        Assert.True(t.TryAddPermission(IPAddress.Parse("8.8.8.3"), 300, 150));
    }

    [Theory]
    [InlineData(0x3FFF)]
    [InlineData(0x8000)]
    [InlineData(0x0000)]
    [InlineData(0xFFFF)]
    public void Rfc8656_11_2_ChannelNumberOutsideRange_IsRefused(int number)
    {
        Assert.Equal(ChannelBindResult.BadNumber, new PeerBindings(4, 4).TryBindChannel((ushort)number, PeerA, 600, 0));
    }

    [Fact]
    public void Rfc8656_11_2_ChannelIsBoundToOnePeer_AndAPeerToOneChannel()
    {
        var t = new PeerBindings(4, 4);
        Assert.Equal(ChannelBindResult.Ok, t.TryBindChannel(0x4000, PeerA, 600, 0));
        Assert.Equal(ChannelBindResult.Ok, t.TryBindChannel(0x4000, new IPEndPoint(PeerA.Address, PeerA.Port), 900, 100));
        Assert.Equal(ChannelBindResult.Conflict, t.TryBindChannel(0x4000, PeerA2, 900, 100));
        Assert.Equal(ChannelBindResult.Conflict, t.TryBindChannel(0x4001, PeerA, 900, 100));
        Assert.Equal(PeerA, t.PeerOf(0x4000, 899));
        Assert.Equal(0x4000, t.ChannelOf(PeerA, 899));
        Assert.Null(t.PeerOf(0x4001, 0));
        Assert.Equal(0, t.ChannelOf(PeerB, 0));
    }

    [Fact]
    public void Rfc8656_12_ExpiredChannel_Unbinds_AndCanBeRebound()
    {
        var t = new PeerBindings(4, 4);
        t.TryBindChannel(0x4000, PeerA, 600, 0);
        Assert.Null(t.PeerOf(0x4000, 600));
        Assert.Equal(0, t.ChannelOf(PeerA, 600));
        Assert.Equal(ChannelBindResult.Ok, t.TryBindChannel(0x4000, PeerB, 1200, 600));
        Assert.Equal(ChannelBindResult.Ok, t.TryBindChannel(0x4001, PeerA, 1200, 600));
    }

    [Fact]
    public void Channels_AreCapped()
    {
        var t = new PeerBindings(4, 1);
        Assert.Equal(ChannelBindResult.Ok, t.TryBindChannel(0x4000, PeerA, 600, 0));
        Assert.Equal(ChannelBindResult.Full, t.TryBindChannel(0x4001, PeerB, 600, 0));
        Assert.Equal(ChannelBindResult.Ok, t.TryBindChannel(0x4001, PeerB, 1200, 600));
    }
}

public class ExpiryQueueTests
{
    [Fact]
    public void PopsOnlyWhatIsDue_InDeadlineOrder()
    {
        var q = new ExpiryQueue<string>();
        q.Add("b", 20);
        q.Add("a", 10);
        q.Add("c", 30);
        Assert.False(q.TryPopDue(9, out _));
        Assert.True(q.TryPopDue(25, out var first));
        Assert.Equal("a", first);
        Assert.True(q.TryPopDue(25, out var second));
        Assert.Equal("b", second);
        Assert.False(q.TryPopDue(25, out _));
        Assert.Equal(1, q.Count);
    }
}

public class AllocationPeerEndPointTests
{
    private static Allocation NewAllocation() =>
        new(new StreamClientLink(Stream.Null, new IPEndPoint(IPAddress.Loopback, 1), new IPEndPoint(IPAddress.Loopback, 2),
                new TcpConnectionWatchdog(new NatKit.TestSupport.ManualTimeProvider(), TimeSpan.FromHours(1), TimeSpan.FromHours(1), _ => { },
                    CancellationToken.None)),
            "u", [1], NatKit.Stun.StunPasswordAlgorithm.Md5, new PeerBindings(4, 4), new TokenBucket(0, 0, 1000, 0));

    private static NatKit.Stun.StunAddress Peer(int port) =>
        NatKit.Stun.StunAddress.FromEndPoint(new IPEndPoint(IPAddress.Parse("198.51.100.7"), port));

    private int _made;

    private IPEndPoint Make(NatKit.Stun.StunAddress s)
    {
        _made++;
        return new IPEndPoint(s.ToIPAddress(), s.Port);
    }

    [Fact]
    public void SamePeer_GetsTheSameEndPoint_WithoutMakingAnother()
    {
        var a = NewAllocation();

        var first = a.PeerEndPoint(Peer(5000), Make);
        Assert.Same(first, a.PeerEndPoint(Peer(5000), Make));
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.7"), 5000), first);
        Assert.Equal(1, _made);
        Assert.Equal(5001, a.PeerEndPoint(Peer(5001), Make).Port); // another port is another peer
        Assert.Equal(2, _made);
    }

    [Fact]
    public void ManyPeers_TheCacheStaysBounded_AndStartsOver()
    {
        var a = NewAllocation();

        var first = a.PeerEndPoint(Peer(1), Make);
        for (var port = 2; port <= 65; port++)
        {
            a.PeerEndPoint(Peer(port), Make); // the 65th distinct peer starts the cache over
        }

        Assert.NotSame(first, a.PeerEndPoint(Peer(1), Make));
        Assert.Equal(66, _made);
    }
}
