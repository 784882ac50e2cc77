using System.Buffers.Binary;
using System.Net;
using NatKit.Lab;
using NatKit.Lab.Tests;
using NatKit.Nat;
using NatKit.Traversal.HardNat;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Tests;

/// <summary>
/// Birthday probing's order on the wire, read from the hard NAT's outside link: Linux conntrack gives a new mapping a
/// random port among those no entry uses, and an easy-side probe that arrived first left an entry for its port, so a
/// mapping made after a probe can no longer be met by it; and a full-range punch that reaches the easy side's NAT
/// before its prime toward that port moves the easy side's mapping. So every mapping of the hard side exists (made by
/// a hop-limited prime that dies before the easy side's NAT) before the first datagram of the easy side arrives, and
/// no punch from those mappings crosses the internet before then.
/// </summary>
public sealed class BirthdayPrimingLabTests
{
    [Fact]
    public void HardSide_MakesEveryMappingWithAPrime_BeforeTheEasySidesFirstDatagramArrives()
    {
        var t = TraversalLab.Build(NatPresets.PortRestrictedCone, NatPresets.TailscaleHard, seed: 11);
        using var pcap = new MemoryStream();
        var capture = t.Lab.Capture(t.Lab.Router("nat-b"), NatSide.Outside, pcap);
        var method = t.Lab.Run(async () =>
        {
            await using var servers = await TraversalLab.StartServersAsync(t);
            var options = TraversalLab.Options(t);
            await using var nodeA = await TraversalNode.StartAsync(t.A, new IPEndPoint(IPAddress.Any, 0), NodeIdentity.Create(), options);
            await using var nodeB = await TraversalNode.StartAsync(t.B, new IPEndPoint(IPAddress.Any, 0), NodeIdentity.Create(), options);
            var accept = nodeB.AcceptAsync();
            await using var ca = await nodeA.ConnectAsync(nodeB.Id);
            await using var cb = await accept;
            return ca.Method;
        });
        capture.Dispose();
        Assert.Equal(TraversalMethod.Birthday, method);

        var easy = IPAddress.Parse("198.51.100.1");
        var hard = IPAddress.Parse("198.51.100.2");
        var firstFromEasy = long.MaxValue;
        var primedAt = new Dictionary<int, long>();
        var punchedBeforeEasy = new HashSet<int>();
        var records = PcapReader.ReadWithTimes(pcap.ToArray());
        foreach (var (seconds, micros, packet) in records)
        {
            if (!Udp(packet, out var ttl, out var src, out var srcPort, out var dst))
            {
                continue;
            }

            var at = seconds * 1_000_000 + micros;
            if (src.Equals(easy) && dst.Equals(hard))
            {
                firstFromEasy = Math.Min(firstFromEasy, at);
            }
            else if (src.Equals(hard) && dst.Equals(easy))
            {
                // the router sent it on with one hop left: a prime, which the next router drops
                if (ttl <= 1)
                {
                    primedAt.TryAdd(srcPort, at);
                }
                else if (at < firstFromEasy && primedAt.ContainsKey(srcPort))
                {
                    punchedBeforeEasy.Add(srcPort);
                }
            }
        }

        Assert.NotEqual(long.MaxValue, firstFromEasy);
        Assert.Equal(new ProbeBudget().HardSideSockets, primedAt.Count(p => p.Value < firstFromEasy));
        Assert.Empty(punchedBeforeEasy);
    }

    /// <summary>An IPv4 UDP datagram's TTL, source and destination.</summary>
    private static bool Udp(byte[] packet, out int ttl, out IPAddress src, out int srcPort, out IPAddress dst)
    {
        ttl = srcPort = 0;
        src = dst = IPAddress.None;
        if (packet.Length < 28 || packet[0] >> 4 != 4 || packet[9] != 17)
        {
            return false;
        }

        var ihl = (packet[0] & 0xF) * 4;
        ttl = packet[8];
        src = new IPAddress(packet.AsSpan(12, 4));
        dst = new IPAddress(packet.AsSpan(16, 4));
        srcPort = BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(ihl));
        return true;
    }
}
