using System.Net;
using System.Net.Sockets;
using NatKit.Net.Internal;

namespace NatKit.Net.Tests;

public sealed class EndPointCacheTests
{
    [Fact]
    public void SocketAddressRoundTrip_KeepsAddressAndPort_AndUnmapsIpv4()
    {
        var cache = new EndPointCache();
        var v4 = new IPEndPoint(IPAddress.Parse("127.0.0.9"), 4242);
        var onV6Socket = cache.GetSocketAddress(v4, AddressFamily.InterNetworkV6);
        Assert.Equal(AddressFamily.InterNetworkV6, onV6Socket.Family);
        Assert.Equal(v4, cache.GetEndPoint(onV6Socket));
    }

    [Fact]
    public void Lookups_DoNotAllocate_ForKnownPeers()
    {
        var cache = new EndPointCache();
        var ep = new IPEndPoint(IPAddress.Loopback, 1000);
        var sa = ep.Serialize();
        _ = cache.GetEndPoint(sa);
        _ = cache.GetSocketAddress(ep, AddressFamily.InterNetwork);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            _ = cache.GetEndPoint(sa);
            _ = cache.GetSocketAddress(ep, AddressFamily.InterNetwork);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Cache_IsBounded()
    {
        var cache = new EndPointCache();
        for (var port = 1; port <= EndPointCache.Capacity * 2; port++)
        {
            var ep = new IPEndPoint(IPAddress.Loopback, port);
            Assert.Equal(ep, cache.GetEndPoint(ep.Serialize()));
        }
    }

    /// <summary>Bounded means forgetting: a full cache starts over, so a peer seen before the newest one past
    /// <see cref="EndPointCache.Capacity"/> gets a fresh (equal) instance, in both directions.</summary>
    [Fact]
    public void Cache_WhenFull_StartsOver()
    {
        var cache = new EndPointCache();
        var first = new IPEndPoint(IPAddress.Loopback, 1);
        var firstEndPoint = cache.GetEndPoint(first.Serialize());
        var firstAddress = cache.GetSocketAddress(first, AddressFamily.InterNetwork);
        for (var port = 2; port <= EndPointCache.Capacity; port++)
        {
            var ep = new IPEndPoint(IPAddress.Loopback, port);
            _ = cache.GetEndPoint(ep.Serialize());
            _ = cache.GetSocketAddress(ep, AddressFamily.InterNetwork);
        }

        Assert.Same(firstEndPoint, cache.GetEndPoint(first.Serialize()));
        Assert.Same(firstAddress, cache.GetSocketAddress(first, AddressFamily.InterNetwork));

        var oneMore = new IPEndPoint(IPAddress.Loopback, EndPointCache.Capacity + 1);
        _ = cache.GetEndPoint(oneMore.Serialize());
        _ = cache.GetSocketAddress(oneMore, AddressFamily.InterNetwork);

        var again = cache.GetEndPoint(first.Serialize());
        Assert.NotSame(firstEndPoint, again);
        Assert.Equal(first, again);
        var againAddress = cache.GetSocketAddress(first, AddressFamily.InterNetwork);
        Assert.NotSame(firstAddress, againAddress);
        Assert.Equal(firstAddress, againAddress);
    }
}
