using System.Net;
using NatKit.Net;

namespace NatKit.Utp.Tests.Shared;

/// <summary>Where a uTP contract test runs: two endpoints and an attacker, each on a network with its address, and
/// the random source the sockets use (the lab's, so a run repeats).</summary>
public sealed record UtpNetworks(INetwork A, IPAddress AAddress, INetwork B, IPAddress BAddress, INetwork Mallory,
    IPAddress MalloryAddress, Random? Random);

/// <summary>
/// uTP's suite for both networks, written once (docs/testing.md, "One suite, two networks") and run on
/// <see cref="SystemNetwork"/> over loopback (<see cref="UtpOnLoopback"/>) and in the in-memory lab in virtual time
/// (<see cref="UtpInTheLab"/>). What needs impaired links or virtual time to the tick (loss, LEDBAT, dead-peer and
/// SYN bounds, an idle hour) is LabTests'; the state machine against test doubles is ConnectionTests'.
/// </summary>
public abstract class UtpContract
{
    /// <summary>Runs <paramref name="body"/> with the networks (on the lab's loop, in virtual time, for the lab).</summary>
    protected abstract void Run(Func<UtpNetworks, Task> body);

    /// <summary>A safety net so a broken stream fails instead of hanging (never a wait for success).</summary>
    private static CancellationTokenSource Deadline(INetwork network) =>
        new(TimeSpan.FromSeconds(30), network.TimeProvider);

    [Fact]
    public void Connect_Accept_BulkBothWays_ArrivesIntact_AndCloseEndsBothReads() => Run(async n =>
    {
        using var cts = Deadline(n.A);
        var options = new UtpOptions { Random = n.Random };
        await using var server = await UtpSocket.BindAsync(n.B, new IPEndPoint(n.BAddress, 0), options);
        await using var client = await UtpSocket.BindAsync(n.A, new IPEndPoint(n.AAddress, 0), options);
        server.Listen();

        var accept = server.AcceptAsync(cts.Token);
        await using var a = await client.ConnectAsync(server.LocalEndPoint, cts.Token);
        await using var b = await accept;
        Assert.Equal((ushort)(a.ReceiveConnectionId + 1), a.SendConnectionId);
        Assert.Equal(a.ReceiveConnectionId, b.SendConnectionId);
        Assert.Equal(a.SendConnectionId, b.ReceiveConnectionId);

        await TestData.ExchangeAndVerifyAsync(a, b, TestData.Generate(3_000_000, 1), TestData.Generate(2_000_000, 2),
            65536, cts.Token);
    });

    [Fact]
    public void Flood_OfGarbageAndForgedConnectionIds_ChangesNothing() => Run(async n =>
    {
        var data = TestData.Generate(600_000, 31);
        var options = new UtpOptions { Random = n.Random };
        await using var a = await UtpSocket.BindAsync(n.A, new IPEndPoint(n.AAddress, 0), options);
        await using var b = await UtpSocket.BindAsync(n.B, new IPEndPoint(n.BAddress, 0), options);
        var accept = b.AcceptAsync();
        await using var client = await a.ConnectAsync(b.LocalEndPoint);
        await using var server = await accept;

        var flood = FloodAsync(n, b.LocalEndPoint, client, server);
        var read = TestData.ReadToEndAsync(server, CancellationToken.None);
        await TestData.WriteChunkedAsync(client, data, 32 * 1024, CancellationToken.None);
        client.ShutdownWrite();
        var got = await read;
        var sent = await flood;

        Assert.Equal(TestData.Sha256(data), TestData.Sha256(got));
        Assert.Equal(1, b.ConnectionCount);
        Assert.Equal(6000, sent);
    });

    /// <summary>Mallory sends, to b's uTP port, random bytes, uTP packets of every type but SYN with random
    /// connection ids, and packets carrying the live connection's ids (from the wrong address).</summary>
    private static async Task<int> FloodAsync(UtpNetworks n, IPEndPoint target, UtpStream client, UtpStream server)
    {
        using var socket = await n.Mallory.BindUdpAsync(new IPEndPoint(n.MalloryAddress, 0));
        var random = new Random(99);
        var packet = new byte[UtpHeader.Size + 64];
        var sent = 0;
        for (var i = 0; i < 6000; i++)
        {
            random.NextBytes(packet);
            var type = (UtpPacketType)random.Next(4);
            switch (i % 3)
            {
                case 1:
                    UtpHeader.Write(packet, type, 0, (ushort)random.Next(0x10000), (uint)random.Next(), 0,
                        (uint)random.Next(), (ushort)random.Next(), (ushort)random.Next());
                    break;
                case 2:
                    UtpHeader.Write(packet, type, 0, i % 2 == 0 ? client.SendConnectionId : server.SendConnectionId,
                        (uint)random.Next(), 0, (uint)random.Next(), (ushort)random.Next(), (ushort)random.Next());
                    break;
            }

            await socket.SendToAsync(packet.AsMemory(0, 8 + random.Next(packet.Length - 8)), target);
            sent++;
            if (i % 20 == 0)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(1), n.Mallory.TimeProvider);
            }
        }

        return sent;
    }
}
