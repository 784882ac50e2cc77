using System.Net;
using NatKit.Net;

namespace NatKit.Net.Tests;

/// <summary>TCP_CONGESTION through the real network's connections and listeners.</summary>
public sealed class TcpCongestionControlTests
{
    /// <summary>An algorithm this kernel has that is not its default, so a socket reporting it was really set.</summary>
    private static string NonDefault() =>
        SystemNetwork.AvailableCongestionControl.FirstOrDefault(a => a != SystemNetwork.DefaultCongestionControl)
        ?? throw new InvalidOperationException("this kernel has one congestion control: nothing to tell a chosen one by");

    private static readonly SystemNetwork Net = SystemNetwork.Instance;

    [Fact]
    public async Task Listener_PassesItsAlgorithmOnToAcceptedConnections()
    {
        var chosen = NonDefault();
        await using var listener = await Net.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var cc = Assert.IsAssignableFrom<ITcpCongestionControl>(listener);
        cc.SetCongestionControl(chosen);
        Assert.Equal(chosen, cc.CongestionControl);

        await using var client = await Net.ConnectTcpAsync(listener.LocalEndPoint);
        await using var accepted = await listener.AcceptAsync();
        Assert.Equal(chosen, Assert.IsAssignableFrom<ITcpCongestionControl>(accepted).CongestionControl);
        Assert.NotEqual(chosen, Assert.IsAssignableFrom<ITcpCongestionControl>(client).CongestionControl);
    }

    [Fact]
    public async Task Connection_TakesAnAlgorithmAfterConnecting()
    {
        var chosen = NonDefault();
        await using var listener = await Net.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var client = await Net.ConnectTcpAsync(listener.LocalEndPoint);
        await using var accepted = await listener.AcceptAsync();
        var cc = Assert.IsAssignableFrom<ITcpCongestionControl>(client);
        cc.SetCongestionControl(chosen);
        Assert.Equal(chosen, cc.CongestionControl);

        // still a working connection
        await client.Stream.WriteAsync("x"u8.ToArray());
        var one = new byte[1];
        Assert.Equal(1, await accepted.Stream.ReadAsync(one));
    }

    [Fact]
    public async Task Network_ConnectsWithTheAlgorithmFromTheFirstPacket()
    {
        var chosen = NonDefault();
        await using var listener = await Net.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        ITcpCongestionControlNetwork choosing = Net;
        await using var client = await choosing.ConnectTcpAsync(listener.LocalEndPoint, null, chosen);
        await using var accepted = await listener.AcceptAsync();
        Assert.Equal(chosen, Assert.IsAssignableFrom<ITcpCongestionControl>(client).CongestionControl);

        var e = await Assert.ThrowsAsync<NetworkException>(async () =>
            await choosing.ConnectTcpAsync(listener.LocalEndPoint, null, "natkit-nosuch"));
        Assert.Contains("natkit-nosuch", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("natkit-nosuch")] // well-formed, not a kernel algorithm
    [InlineData("cubic\0bbr")]
    [InlineData("cubic bbr")]
    [InlineData("")]
    [InlineData("averyveryverylongname")]
    public async Task UnknownOrMalformedName_IsRefusedAndTheSocketKeepsItsAlgorithm(string name)
    {
        await using var listener = await Net.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var cc = Assert.IsAssignableFrom<ITcpCongestionControl>(listener);
        var before = cc.CongestionControl;
        Assert.NotNull(before);
        var e = Assert.Throws<NetworkException>(() => cc.SetCongestionControl(name));
        Assert.Contains("congestion control", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, cc.CongestionControl);
    }

    [Fact]
    public void AvailableAlgorithms_ComeFromTheKernel_AndIncludeTheDefault()
    {
        Assert.Contains("reno", SystemNetwork.AvailableCongestionControl); // always built in
        Assert.Contains(SystemNetwork.DefaultCongestionControl, SystemNetwork.AvailableCongestionControl);
    }
}
