using System.Net;
using System.Security.Cryptography;
using NatKit.Lab;
using NatKit.Lab.Scheduling;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Peer;

namespace NatKit.Traversal.Tests.Peer;

/// <summary>
/// The peer network module in the in-memory lab, in virtual time, behind the lab's NAT engine: a TCP client on a's
/// host reads a blob from a service on b's host through a's forwarded port, a TLS 1.3 pipe over uTP, and b's exposed
/// service. Behind two "hard" NATs (a new random port per destination) no direct path exists and the pipe goes
/// through the TURN relay on the lab's internet; behind two "easy" NATs it goes direct. The pipe table says which.
/// </summary>
public sealed class PeerNetworkLabTests
{
    [Fact]
    public void HardNatsOnBothSides_PipeATransferThroughTheRelay()
    {
        var r = PeerLab.Transfer(NatPresets.TailscaleHard, NatPresets.TailscaleHard, 2 * 1000 * 1000, seed: 11);
        Assert.Equal(r.ExpectedSha256, r.Sha256);
        Assert.Equal(PathKind.Relay, r.ForwardPipe.Path);
        Assert.Equal(PathKind.Relay, r.ExposedPipe.Path);
        Assert.Equal(PathKind.Relay, r.Link);
    }

    [Fact]
    public void TheSameSeed_RepeatsTheTransfer_ToTheVirtualTick()
    {
        var first = PeerLab.Transfer(NatPresets.TailscaleEasy, NatPresets.TailscaleEasy, 500 * 1000, seed: 13);
        var second = PeerLab.Transfer(NatPresets.TailscaleEasy, NatPresets.TailscaleEasy, 500 * 1000, seed: 13);
        Assert.Equal(first.Sha256, second.Sha256);
        Assert.Equal(first.Elapsed, second.Elapsed); // TLS ran on the loop: nothing left virtual time's order
        Assert.Equal(first.ForwardPipe.Age, second.ForwardPipe.Age);
    }

    [Fact]
    public void EasyNatsOnBothSides_PipeATransferDirectly()
    {
        var r = PeerLab.Transfer(NatPresets.TailscaleEasy, NatPresets.TailscaleEasy, 2 * 1000 * 1000, seed: 12);
        Assert.Equal(r.ExpectedSha256, r.Sha256);
        Assert.Equal(PathKind.Direct, r.ForwardPipe.Path);
        Assert.Equal(PathKind.Direct, r.ExposedPipe.Path);
        Assert.Equal(PathKind.Direct, r.Link);
    }
}

/// <summary>Two peer networks in <see cref="TraversalLab"/>'s topology: a forwards a local port to the service
/// <c>blob</c> that b exposes (a lab TCP server on b's host that sends a seeded blob and closes).</summary>
internal static class PeerLab
{
    private const int ServicePort = 8080;
    private const int ForwardPort = 9000;

    /// <param name="ForwardPipe">a's row of the pipe table while the transfer ran.</param>
    /// <param name="ExposedPipe">b's row.</param>
    /// <param name="Link">the path of a's link to b.</param>
    public sealed record Result(string ExpectedSha256, string Sha256, long Received, PipeInfo ForwardPipe,
        PipeInfo ExposedPipe, PathKind Link, TimeSpan Elapsed);

    public static Result Transfer(NatPolicy? a, NatPolicy? b, int length, int seed)
    {
        var (body, sha) = TestService.Blob(length, seed);
        var t = TraversalLab.Build(a, b, seed);
        return t.Lab.Run(async () =>
        {
            await using var servers = await TraversalLab.StartServersAsync(t);
            var service = new IPEndPoint(t.B.Address, ServicePort);
            await using var listener = await t.B.ListenTcpAsync(service);
            var serve = ServeBlobAsync(listener, body);
            using var ia = NodeIdentity.Create();
            using var ib = NodeIdentity.Create();
            var traversal = TraversalLab.Options(t);
            var options = new PeerNetworkOptions { Traversal = traversal };
            await using var na = new PeerNetwork(t.A, PeerNetworkHost.InMemory(ia, [new PeerInfo(ib.Id)], "a", FileLogger.For("a")),
                options with { Forward = [new PortForward(new IPEndPoint(t.A.Address, ForwardPort), ib.Id, "blob")] });
            await using var nb = new PeerNetwork(t.B, PeerNetworkHost.InMemory(ib, [new PeerInfo(ia.Id)], "b", FileLogger.For("b")),
                options with { Expose = [new ExposedService("blob", service)] });
            await na.StartAsync();
            await nb.StartAsync();

            var started = t.Lab.TimeProvider.GetTimestamp();
            await using var client = await t.A.ConnectTcpAsync(new IPEndPoint(t.A.Address, ForwardPort));
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[64 * 1024];
            long received = 0;
            PipeInfo? forward = null, exposed = null;
            while (true)
            {
                var n = await client.Stream.ReadAsync(buffer);
                if (n == 0)
                {
                    break;
                }

                hash.AppendData(buffer, 0, n);
                received += n;
                if (forward is null && na.Pipes.Count == 1 && nb.Pipes.Count == 1)
                {
                    forward = na.Pipes[0];
                    exposed = nb.Pipes[0];
                }
            }

            var elapsed = t.Lab.TimeProvider.GetElapsedTime(started);
            client.ShutdownSend(); // the service reads to our FIN: the half-close travels back through the pipe
            await serve;
            var link = Assert.Single(na.Links);
            Assert.NotNull(forward);
            Assert.NotNull(exposed);
            await na.StopAsync();
            await nb.StopAsync();
            Assert.Equal((0, 0, 0), (na.RunningTasks, na.Pipes.Count, na.Links.Count));
            Assert.Equal((0, 0, 0), (nb.RunningTasks, nb.Pipes.Count, nb.Links.Count));
            return new Result(sha, Convert.ToHexStringLower(hash.GetHashAndReset()), received, forward, exposed,
                link.Path, elapsed);
        }, new LabRunOptions { MaxVirtualTime = TimeSpan.FromMinutes(10) });
    }

    private static async Task ServeBlobAsync(IStreamListener listener, byte[] body)
    {
        await using var c = await listener.AcceptAsync();
        await c.Stream.WriteAsync(body);
        c.ShutdownSend();
        var buffer = new byte[16];
        while (await c.Stream.ReadAsync(buffer) > 0)
        {
        }
    }
}
