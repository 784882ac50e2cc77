using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Peer;

namespace NatKit.Traversal.Tests.Peer;

/// <summary>What a running node changes without a restart (<see cref="PeerNetwork.ReconfigureAsync"/>,
/// <see cref="PeerNetwork.DisconnectAsync"/>, <see cref="PeerTable.Replace"/>) and its drain, on loopback: the echo
/// service answers only after the client's FIN, so a pipe stays open until the test ends it.</summary>
public sealed class PeerNetworkLiveTests
{
    private static CancellationTokenSource Deadline() => new(TimeSpan.FromSeconds(90));

    /// <summary>Two nodes, the echo service, and one pipe open through A's forward; disposed in reverse.</summary>
    private sealed class OnePipe : IAsyncDisposable
    {
        public required TestService Echo { get; init; }

        public required LoopbackPeers Peers { get; init; }

        public required CancellationTokenSource Cts { get; init; }

        public required TcpClient Client { get; init; }

        public static async Task<OnePipe> StartAsync()
        {
            var echo = TestService.Echo();
            var peers = await LoopbackPeers.StartAsync(echo.EndPoint);
            var cts = Deadline();
            return new OnePipe { Echo = echo, Peers = peers, Cts = cts, Client = await OpenPipeAsync(peers, peers.Forward, cts.Token) };
        }

        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            await Peers.DisposeAsync();
            await Echo.DisposeAsync();
            Cts.Dispose();
        }
    }

    /// <summary>A client through A's forward with bytes written, once both ends of the pipe are in the tables.</summary>
    private static async Task<TcpClient> OpenPipeAsync(LoopbackPeers peers, IPEndPoint forward, CancellationToken ct)
    {
        var openedA = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var openedB = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OpenedA(PipeInfo _) => openedA.TrySetResult();
        void OpenedB(PipeInfo _) => openedB.TrySetResult();
        peers.A.PipeOpened += OpenedA;
        peers.B.PipeOpened += OpenedB;
        var client = new TcpClient();
        await client.ConnectAsync(forward, ct);
        await client.GetStream().WriteAsync(new byte[1000], ct);
        await Task.WhenAll(openedA.Task, openedB.Task).WaitAsync(ct);
        peers.A.PipeOpened -= OpenedA;
        peers.B.PipeOpened -= OpenedB;
        return client;
    }

    /// <summary>True when the pipe's TCP end was closed (EOF or reset) by the node.</summary>
    private static async Task<bool> ClosedAsync(TcpClient client, CancellationToken ct)
    {
        try
        {
            var buffer = new byte[4096];
            while (await client.Client.ReceiveAsync(buffer, SocketFlags.None, ct) > 0)
            {
            }

            return true;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    [Fact]
    public async Task ReconfigureAsync_KeepsAnUnchangedForwardsPipe_OpensANewForward_AndClosesPipesOfAServiceNoLongerExposed()
    {
        await using var run = await OnePipe.StartAsync();
        var (echo, peers, cts, kept, first) = (run.Echo, run.Peers, run.Cts, run.Client, run.Peers.A.Forwards[0]);
        var configured = new PortForward(LoopbackPeers.Any, peers.IdentityB.Id, "web");

        var changes = await peers.A.ReconfigureAsync([], [configured, configured with { Service = "web2" }], cts.Token);
        Assert.Equal(new PeerNetworkChanges(1, 0, 0, 1, 0), changes);
        Assert.Equal(2, peers.A.Forwards.Count);
        Assert.Equal(first, peers.A.Forwards[0]); // the same listener
        Assert.Single(peers.A.Pipes);

        // B exposes web2 instead of web: web's pipe closes; a pipe through A's new forward reaches web2
        var closed = await peers.B.ReconfigureAsync([new ExposedService("web2", echo.EndPoint)], [], cts.Token);
        Assert.Equal(1, closed.PipesClosed);
        Assert.Equal("web2", Assert.Single(peers.B.Exposed).Name);
        Assert.True(await ClosedAsync(kept, cts.Token));
        using var second = await OpenPipeAsync(peers, peers.A.Forwards[1].Listen, cts.Token);

        // A drops the web forward: its port refuses, web2's open pipe carries on to its end
        changes = await peers.A.ReconfigureAsync([], [configured with { Service = "web2" }], cts.Token);
        Assert.Equal((0, 1, 0, 1), (changes.ForwardsOpened, changes.ForwardsClosed, changes.ForwardsChanged, changes.ForwardsKept));
        using var refused = new TcpClient();
        var e = await Assert.ThrowsAsync<SocketException>(() => refused.ConnectAsync(first.Listen, cts.Token).AsTask());
        Assert.Equal(SocketError.ConnectionRefused, e.SocketErrorCode);
        var stream = second.GetStream();
        second.Client.Shutdown(SocketShutdown.Send);
        var back = new MemoryStream();
        await stream.CopyToAsync(back, cts.Token);
        Assert.Equal(1000, back.Length); // the echo's answer came through the pipe
    }

    [Fact]
    public async Task ReconfigureAsync_WhenANewPortIsTaken_ChangesNothing()
    {
        await using var run = await OnePipe.StartAsync();
        var (echo, peers, cts, before) = (run.Echo, run.Peers, run.Cts, run.Peers.A.Forwards);
        using var busy = new TcpListener(IPAddress.Loopback, 0);
        busy.Start();

        var taken = new PortForward((IPEndPoint)busy.LocalEndpoint, peers.IdentityB.Id, "web");
        await Assert.ThrowsAsync<NetworkException>(() =>
            peers.A.ReconfigureAsync([new ExposedService("other", echo.EndPoint)], [taken], cts.Token));
        await Assert.ThrowsAsync<ArgumentException>(() =>
            peers.A.ReconfigureAsync([new ExposedService("", echo.EndPoint)], [], cts.Token));

        Assert.Equal(before, peers.A.Forwards);
        Assert.Empty(peers.A.Exposed);
        Assert.Single(peers.A.Pipes);
        using var again = await OpenPipeAsync(peers, before[0].Listen, cts.Token); // the listener still accepts
        Assert.Equal(2, peers.A.Pipes.Count);
    }

    [Fact]
    public async Task DisconnectAsync_ClosesThePeersPipesAndDropsItsLinks()
    {
        await using var run = await OnePipe.StartAsync();
        var (peers, cts, client) = (run.Peers, run.Cts, run.Client);
        Assert.Single(peers.B.Links);

        var closed = new TaskCompletionSource<PipeInfo>(TaskCreationOptions.RunContinuationsAsynchronously);
        peers.B.PipeClosed += p => closed.TrySetResult(p);
        Assert.Equal(1, await peers.B.DisconnectAsync(peers.IdentityA.Id));
        Assert.Empty(peers.B.Links);
        Assert.True(await ClosedAsync(client, cts.Token));
        Assert.Equal(peers.IdentityA.Id, (await closed.Task.WaitAsync(cts.Token)).Peer);
        Assert.Empty(peers.B.Pipes);
    }

    [Fact]
    public async Task DrainAsync_ClosesTheForwardedPorts_AndReturnsOnceTheOpenPipeEnds()
    {
        await using var run = await OnePipe.StartAsync();
        var (peers, cts, client, forward) = (run.Peers, run.Cts, run.Client, run.Peers.Forward);

        var draining = peers.A.DrainAsync(TimeSpan.FromMinutes(5), cts.Token);
        using (var refused = new TcpClient())
        {
            var e = await Assert.ThrowsAsync<SocketException>(() => refused.ConnectAsync(forward, cts.Token).AsTask());
            Assert.Equal(SocketError.ConnectionRefused, e.SocketErrorCode);
        }

        Assert.False(draining.IsCompleted);
        client.Client.Shutdown(SocketShutdown.Send); // the echo answers and closes: the pipe ends
        Assert.True(await ClosedAsync(client, cts.Token));
        Assert.Equal(0, await draining.WaitAsync(cts.Token));
    }

    [Fact]
    public async Task DrainAsync_WithNoTime_ReturnsTheOpenPipes_AndStopCutsThem()
    {
        await using var run = await OnePipe.StartAsync();
        var (peers, cts, client) = (run.Peers, run.Cts, run.Client);
        Assert.Equal(1, await peers.A.DrainAsync(TimeSpan.Zero, cts.Token));
        await peers.A.StopAsync();
        Assert.True(await ClosedAsync(client, cts.Token));
    }

    [Fact]
    public void PeerTable_Replace_KeepsWhatWasLearned_RemovesOnlyListedNodesThatLeft()
    {
        using var a = NodeIdentity.Create();
        using var b = NodeIdentity.Create();
        using var stranger = NodeIdentity.Create();
        var table = new PeerTable([new PeerInfo(a.Id) { Name = "a" }, new PeerInfo(b.Id) { Name = "b" }]);
        var seen = new IPEndPoint(IPAddress.Loopback, 4000);
        table.Update(new PeerInfo(a.Id) { Name = "a", EndPoint = seen, Path = PathKind.Direct });
        table.Update(new PeerInfo(stranger.Id)); // learned, never listed (a node that lets in strangers)

        var removed = table.Replace([new PeerInfo(a.Id) { Name = "alice" }]);

        Assert.Equal([b.Id], removed);
        Assert.Null(table.Get(b.Id));
        Assert.Equal(("alice", seen, PathKind.Direct), (table.Get(a.Id)!.Name, table.Get(a.Id)!.EndPoint, table.Get(a.Id)!.Path));
        Assert.NotNull(table.Get(stranger.Id));
        var host = table.CreateHost(a);
        Assert.Equal(2, host.GetKnownNodes().Count);
    }
}
