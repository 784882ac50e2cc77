using System.Buffers.Binary;
using NatKit.Linux;
using NatKit.TestSupport;

namespace NatKit.Linux.Tests;

public sealed class TunDeviceTests
{
    [PeerFact("ip", "ping", Root = true)]
    public async Task TunInsideNamespace_CarriesAPingBothWays()
    {
        await using var ns = await NetworkNamespace.CreateAsync($"nk-{NetworkNamespace.NewRunTag()}-tun");
        using var tun = TunDevice.OpenIn(ns.Name, new TunOptions("nkt0", TunOffloads.None));
        await ns.IpAsync(["addr", "add", "10.9.0.1/24", "dev", "nkt0"]);
        await ns.IpAsync(["link", "set", "nkt0", "up"]);

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var responder = Task.Run(() => AnswerEchoRequests(tun, stop.Token), stop.Token);
        var (code, output, _) = await ns.TryExecAsync("ping", ["-c", "2", "-i", "0.2", "-W", "2", "10.9.0.2"]);
        await stop.CancelAsync();
        var answered = await responder;

        Assert.True(code == 0, output);
        Assert.True(answered >= 2);
        Assert.Contains("2 received", output, StringComparison.Ordinal);
    }

    [PeerFact("ip", Root = true)]
    public async Task Offloads_AreNegotiated_AndTheDeviceIsGoneWithItsHandle()
    {
        await using var ns = await NetworkNamespace.CreateAsync($"nk-{NetworkNamespace.NewRunTag()}-tun");
        using (var tun = TunDevice.OpenIn(ns.Name, new TunOptions("nkt1")))
        {
            Assert.True(tun.HasVirtioHeader);
            Assert.True(tun.Offloads.HasFlag(TunOffloads.Checksum | TunOffloads.Tso4 | TunOffloads.Tso6),
                $"kernel accepted only {tun.Offloads}");
            var links = await ns.IpAsync(["-o", "link", "show"]);
            Assert.Contains("nkt1", links, StringComparison.Ordinal);
        }

        var after = await ns.IpAsync(["-o", "link", "show"]);
        Assert.DoesNotContain("nkt1", after, StringComparison.Ordinal);
    }

    [PeerFact("ip", Root = true)]
    public async Task RemoveAll_DeletesOnlyNamespacesWithTheGivenPrefix()
    {
        var tag = NetworkNamespace.NewRunTag();
        var a = await NetworkNamespace.CreateAsync($"nk-{tag}-a");
        await using var other = await NetworkNamespace.CreateAsync($"nk-{NetworkNamespace.NewRunTag()}-b");
        try
        {
            var removed = await NetworkNamespace.RemoveAllAsync($"nk-{tag}-");
            Assert.Equal([a.Name], removed);
            var left = await NetworkNamespace.ListAsync();
            Assert.DoesNotContain(a.Name, left);
            Assert.Contains(other.Name, left);
        }
        finally
        {
            await a.DisposeAsync();
        }
    }

    /// <summary>Turns each ICMP echo request read from the TUN into a reply written back.</summary>
    private static int AnswerEchoRequests(TunDevice tun, CancellationToken stop)
    {
        var buffer = new byte[2048];
        var answered = 0;
        while (!stop.IsCancellationRequested)
        {
            var n = tun.Read(buffer);
            if (n == 0)
            {
                tun.WaitReadable(50);
                continue;
            }

            var ihl = (buffer[0] & 0xF) * 4;
            if (buffer[0] >> 4 != 4 || buffer[9] != 1 || buffer[ihl] != 8)
            {
                continue;
            }

            // swap addresses (the IPv4 checksum is unchanged), type 8 -> 0 (ICMP checksum + 0x0800)
            var source = BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(12));
            buffer.AsSpan(16, 4).CopyTo(buffer.AsSpan(12));
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(16), source);
            buffer[ihl] = 0;
            var sum = (uint)BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(ihl + 2)) + 0x0800;
            sum = (sum & 0xFFFF) + (sum >> 16);
            BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(ihl + 2), (ushort)sum);
            Assert.True(tun.Write(buffer.AsSpan(0, n)));
            answered++;
        }

        return answered;
    }
}
