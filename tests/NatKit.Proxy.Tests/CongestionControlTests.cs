using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Proxy.Tests.Support;

namespace NatKit.Proxy.Tests;

/// <summary><see cref="ProxyOptions.CongestionControl"/>: both legs of a proxied connection use the chosen algorithm,
/// and a name the kernel or the network cannot take stops start-up.</summary>
public sealed class CongestionControlTests
{
    /// <summary>An algorithm this kernel has that is not its default, so a socket reporting it was really set.</summary>
    private static string NonDefault() =>
        SystemNetwork.AvailableCongestionControl.FirstOrDefault(a => a != SystemNetwork.DefaultCongestionControl)
        ?? throw new InvalidOperationException("this kernel has one congestion control: nothing to tell a chosen one by");

    [Fact]
    public async Task ConnectTunnel_BothLegsUseTheChosenAlgorithm()
    {
        var chosen = NonDefault();
        var network = new ChoosingNetwork(SystemNetwork.Instance);
        await using var target = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var options = ProxyServerTests.TestOptions(target.LocalEndPoint.Port) with { CongestionControl = chosen };
        await using var proxy = await ProxyServer.StartAsync(options, network);

        var listener = Assert.IsAssignableFrom<ITcpCongestionControl>(Assert.Single(network.Listeners));
        Assert.Equal(chosen, listener.CongestionControl); // what accepted client connections inherit

        await using var client = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await client.SendAsync($"CONNECT 127.0.0.1:{target.LocalEndPoint.Port} HTTP/1.1\r\nHost: x\r\n\r\n");
        await using var server = await target.AcceptAsync();
        Assert.Equal(200, (await client.ReadResponseAsync(head: true)).Status);

        var upstream = Assert.IsAssignableFrom<ITcpCongestionControl>(Assert.Single(network.Connections));
        Assert.Equal(chosen, upstream.CongestionControl);
        // chosen before the SYN (through ITcpCongestionControlNetwork), not switched after a plain connect: a
        // socket switched away from BBR keeps its pacing, though it then reports the new name all the same
        Assert.Equal(new[] { chosen }, network.ChosenAtConnect);
        Assert.NotEqual(chosen, ((ITcpCongestionControl)server).CongestionControl); // the far end keeps its own

        // and the tunnel carries bytes
        await client.SendAsync("ping");
        var four = new byte[4];
        await server.Stream.ReadExactlyAsync(four);
        Assert.Equal("ping"u8.ToArray(), four);
    }

    [Fact]
    public async Task WithoutTheOption_SocketsKeepTheSystemDefault()
    {
        var system = SystemNetwork.DefaultCongestionControl;
        var network = new RecordingNetwork(SystemNetwork.Instance);
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions(), network);
        Assert.Equal(system, ((ITcpCongestionControl)Assert.Single(network.Listeners)).CongestionControl);
    }

    [Fact]
    public async Task UnknownAlgorithm_StopsStartUp_AndFreesThePort()
    {
        int port;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        }

        var options = ProxyServerTests.TestOptions() with
        {
            HttpListen = new IPEndPoint(IPAddress.Loopback, port),
            CongestionControl = "natkit-nosuch",
        };
        var e = await Assert.ThrowsAsync<ArgumentException>(() => ProxyServer.StartAsync(options, SystemNetwork.Instance));
        Assert.Equal(nameof(ProxyOptions.CongestionControl), e.ParamName);
        Assert.Contains("natkit-nosuch", e.Message, StringComparison.Ordinal);
        Assert.Contains("available:", e.Message, StringComparison.Ordinal);

        await using var again = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, port));
    }

    [Fact]
    public async Task NetworkThatCannotChoose_StopsStartUp()
    {
        var options = ProxyServerTests.TestOptions() with { CongestionControl = "reno" };
        var e = await Assert.ThrowsAsync<ArgumentException>(() =>
            ProxyServer.StartAsync(options, new ChoosingNetwork(SystemNetwork.Instance, hideCapability: true)));
        Assert.Equal(nameof(ProxyOptions.CongestionControl), e.ParamName);
    }

    [Fact]
    public async Task NetworkThatCannotConnectChoosing_StopsStartUp()
    {
        var options = ProxyServerTests.TestOptions() with { CongestionControl = "reno" };
        await Assert.ThrowsAsync<ArgumentException>(() =>
            ProxyServer.StartAsync(options, new RecordingNetwork(SystemNetwork.Instance)));
    }

    [Fact]
    public void EmptyName_IsRefusedByValidation() =>
        Assert.Throws<ArgumentException>(() => (ProxyServerTests.TestOptions() with { CongestionControl = "" }).Validate());

    /// <summary>The real network, keeping what it made; with <c>hideCapability</c>, listeners that cannot choose a
    /// congestion control (as the lab's cannot).</summary>
    private class RecordingNetwork(SystemNetwork inner, bool hideCapability = false) : INetwork
    {
        public ConcurrentQueue<IStreamListener> Listeners { get; } = new();

        public ConcurrentQueue<IStreamConnection> Connections { get; } = new();

        /// <summary>The algorithm each connection was opened with, for those opened choosing one.</summary>
        public ConcurrentQueue<string> ChosenAtConnect { get; } = new();

        public TimeProvider TimeProvider => inner.TimeProvider;

        public IReadOnlyList<IPAddress> LocalAddresses => inner.LocalAddresses;

        public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
            inner.BindUdpAsync(localEndPoint, cancellationToken);

        public async ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
            CancellationToken cancellationToken = default)
        {
            var listener = await inner.ListenTcpAsync(localEndPoint, backlog, cancellationToken);
            var result = hideCapability ? new Plain(listener) : listener;
            Listeners.Enqueue(result);
            return result;
        }

        public async ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
            CancellationToken cancellationToken = default)
        {
            var connection = await inner.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken);
            Connections.Enqueue(connection);
            return connection;
        }

        protected async ValueTask<IStreamConnection> ConnectChoosingAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint,
            string congestionControl, CancellationToken cancellationToken)
        {
            var connection = await inner.ConnectTcpAsync(remoteEndPoint, localEndPoint, congestionControl, cancellationToken);
            Connections.Enqueue(connection);
            ChosenAtConnect.Enqueue(congestionControl);
            return connection;
        }

        protected sealed class Plain(IStreamListener inner) : IStreamListener
        {
            public IPEndPoint LocalEndPoint => inner.LocalEndPoint;

            public ValueTask<IStreamConnection> AcceptAsync(CancellationToken cancellationToken = default) =>
                inner.AcceptAsync(cancellationToken);

            public ValueTask DisposeAsync() => inner.DisposeAsync();
        }
    }

    /// <summary>A recording network that can also connect with a chosen congestion control.</summary>
    private sealed class ChoosingNetwork(SystemNetwork inner, bool hideCapability = false)
        : RecordingNetwork(inner, hideCapability), ITcpCongestionControlNetwork
    {
        public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint,
            string congestionControl, CancellationToken cancellationToken = default) =>
            ConnectChoosingAsync(remoteEndPoint, localEndPoint, congestionControl, cancellationToken);
    }
}
