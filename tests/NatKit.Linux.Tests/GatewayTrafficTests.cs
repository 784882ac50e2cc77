using System.Net;
using System.Security.Cryptography;
using System.Text;
using NatKit.Linux;
using NatKit.Nat;
using NatKit.Packets;
using NatKit.TestSupport;

namespace NatKit.Linux.Tests;

/// <summary>Real programs on both sides of `natkit gateway`'s data plane, in namespaces made and removed here.</summary>
public sealed class GatewayTrafficTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [PeerFact("ip", "ping", "nft", Root = true)]
    public async Task Ping_CrossesTheGateway_WithItsIdentifierMapped_AndNoKernelNatAnywhere()
    {
        await using var lab = await GatewayFixture.StartAsync(NatPresets.Symmetric);
        var (code, output, errors) = await lab.Topology.Lan.TryExecAsync("ping",
            ["-c", "3", "-i", "0.2", "-W", "2", GatewayTopology.WanHostAddress], timeout: Deadline);
        Assert.True(code == 0, output + errors);
        Assert.True(output.Contains("3 received", StringComparison.Ordinal), output);

        var flows = await lab.Gateways[0].DataPlane.QueryAsync(e => e.SnapshotFlows());
        var echo = Assert.Single(flows, f => f.Protocol == IpProtocol.Icmp);
        Assert.Equal(GatewayTopology.PublicAddress, echo.External.Address.ToString());
        Assert.Equal(GatewayTopology.LanHostAddress, echo.Internal.Address.ToString());

        foreach (var ns in (NetworkNamespace[])[lab.Topology.Lan, lab.Topology.Wan, .. lab.Topology.Gateways])
        {
            var ruleset = await ns.ExecAsync("nft", ["list", "ruleset"]);
            Assert.DoesNotContain("nat", ruleset, StringComparison.Ordinal);
        }
    }

    [PeerFact("ip", "curl", "python3", Root = true)]
    public async Task Curl_FetchesAPageFromTheWan_AndTheServerSeesThePublicAddress()
    {
        await using var lab = await GatewayFixture.StartAsync(NatPresets.RfcRecommended);
        var root = Directory.CreateTempSubdirectory("natkit-gw-");
        try
        {
            var body = RandomNumberGenerator.GetBytes(3 << 20); // big enough for TSO super-packets
            await File.WriteAllBytesAsync(Path.Combine(root.FullName, "page.bin"), body);
            await using var server = ExternalProcess.Start("ip",
                ["netns", "exec", lab.Topology.Wan.Name, "python3", "-u", "-m", "http.server", "8080", "--bind",
                    GatewayTopology.WanHostAddress, "--directory", root.FullName]);
            await server.WaitForOutputAsync("Serving HTTP", Deadline);

            var fetched = Path.Combine(root.FullName, "fetched.bin");
            var (code, output, errors) = await lab.Topology.Lan.TryExecAsync("curl",
                ["-sS", "--max-time", "20", "-o", fetched, $"http://{GatewayTopology.WanHostAddress}:8080/page.bin"],
                timeout: Deadline);
            Assert.True(code == 0, output + errors);
            Assert.Equal(SHA256.HashData(body), SHA256.HashData(await File.ReadAllBytesAsync(fetched)));
            await server.WaitForOutputAsync(GatewayTopology.PublicAddress + " - -", Deadline);
            Assert.DoesNotContain(GatewayTopology.LanHostAddress, server.Errors + server.Output, StringComparison.Ordinal);
            var stats = lab.Gateways[0].DataPlane.Stats;
            Assert.True(stats.InsideWritten > 0 && stats.OutsideWritten > 0, stats.ToString());
            Assert.True(stats.SuperPackets > 0, "no GSO super-packet went through whole: " + stats);
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    [PeerFact("ip", Root = true)]
    public async Task Udp_GoesOutFromThePublicAddress_AndTheAnswerComesBack()
    {
        await using var lab = await GatewayFixture.StartAsync(NatPresets.PortRestrictedCone);
        var lan = new NamespaceNetwork(lab.Topology.Lan.Name);
        var wan = new NamespaceNetwork(lab.Topology.Wan.Name);
        using var timeout = new CancellationTokenSource(Deadline);
        await using var server = await wan.BindUdpAsync(new IPEndPoint(IPAddress.Parse(GatewayTopology.WanHostAddress), 7000), timeout.Token);
        await using var client = await lan.BindUdpAsync(new IPEndPoint(IPAddress.Any, 40000), timeout.Token);

        await client.SendToAsync(Encoding.ASCII.GetBytes("hello"), new IPEndPoint(IPAddress.Parse(GatewayTopology.WanHostAddress), 7000), timeout.Token);
        var buffer = new byte[1500];
        var receive = server.ReceiveFromAsync(buffer, timeout.Token).AsTask();
        if (await Task.WhenAny(receive, Task.Delay(TimeSpan.FromSeconds(5), timeout.Token)) != receive)
        {
            var plane = lab.Gateways[0].DataPlane;
            var drops = await plane.QueryAsync(e => string.Join(",", Enum.GetValues<NatDropReason>().Where(r => e.DropCount(r) > 0).Select(r => $"{r}={e.DropCount(r)}")));
            Assert.Fail($"the datagram did not arrive: {plane.Stats}; engine drops: {drops}");
        }

        var got = await receive;
        Assert.Equal("hello", Encoding.ASCII.GetString(buffer, 0, got.Length));
        var seen = (IPEndPoint)got.RemoteEndPoint;
        Assert.Equal(GatewayTopology.PublicAddress, seen.Address.ToString());

        await server.SendToAsync(Encoding.ASCII.GetBytes("world"), seen, timeout.Token);
        var back = await client.ReceiveFromAsync(buffer, timeout.Token);
        Assert.Equal("world", Encoding.ASCII.GetString(buffer, 0, back.Length));
        Assert.Equal(GatewayTopology.WanHostAddress, ((IPEndPoint)back.RemoteEndPoint).Address.ToString());
    }

    [PeerFact("ip", "traceroute", Root = true)]
    public async Task Traceroute_AcrossTwoNatKitHops_ShowsEveryHop()
    {
        await using var lab = await GatewayFixture.StartAsync(NatPresets.RfcRecommended, hops: 2);
        var (code, output, errors) = await lab.Topology.Lan.TryExecAsync("traceroute",
            ["-n", "-q", "1", "-w", "2", "-m", "6", GatewayTopology.WanHostAddress], timeout: Deadline);
        Assert.True(code == 0, output + errors);
        var hops = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Where(p => p.Length > 1)
            .Select(p => p[1]).ToList();
        // hop 1: NatKit 1's inside address; 2: the middle router (its Time Exceeded translated back by NatKit 1);
        // 3: NatKit 2's inside address (translated by NatKit 1); 4: the WAN host's port unreachable (both).
        Assert.Equal(["10.0.0.1", "100.64.1.2", "10.1.0.1", GatewayTopology.WanHostAddress], hops);
    }
}

/// <summary>The fallback paths: a link without offloads next to one with them.</summary>
public sealed class GatewayOffloadFallbackTests
{
    [PeerFact("ip", "curl", "python3", Root = true)]
    public async Task SuperPacketsFromTheWan_AreSegmented_ForAnInsideLinkWithoutOffloads()
    {
        await using var topology = await GatewayTopology.CreateNatKitAsync();
        var hop = topology.Hops[0];
        using var inside = TunDevice.OpenIn(hop.InsideNamespace, new TunOptions(hop.InsideTun, TunOffloads.None));
        using var outside = TunDevice.OpenIn(hop.OutsideNamespace, new TunOptions(hop.OutsideTun));
        using var engine = new NatEngine(Gateway.Config(hop, NatPresets.RfcRecommended));
        await using var plane = new GatewayDataPlane(engine, inside, outside);
        plane.Start();
        await new TunLink(hop.InsideNamespace, hop.InsideTun).WaitUntilUpAsync(TimeSpan.FromSeconds(5));
        await new TunLink(hop.OutsideNamespace, hop.OutsideTun).WaitUntilUpAsync(TimeSpan.FromSeconds(5));
        var root = Directory.CreateTempSubdirectory("natkit-gw-");
        try
        {
            var body = RandomNumberGenerator.GetBytes(2 << 20);
            await File.WriteAllBytesAsync(Path.Combine(root.FullName, "page.bin"), body);
            await using var server = ExternalProcess.Start("ip",
                ["netns", "exec", topology.Wan.Name, "python3", "-u", "-m", "http.server", "8080", "--bind",
                    GatewayTopology.WanHostAddress, "--directory", root.FullName]);
            await server.WaitForOutputAsync("Serving HTTP", TimeSpan.FromSeconds(30));
            var fetched = Path.Combine(root.FullName, "fetched.bin");
            var (code, output, errors) = await topology.Lan.TryExecAsync("curl",
                ["-sS", "--max-time", "20", "-o", fetched, $"http://{GatewayTopology.WanHostAddress}:8080/page.bin"],
                timeout: TimeSpan.FromSeconds(30));
            Assert.True(code == 0, output + errors);
            Assert.Equal(SHA256.HashData(body), SHA256.HashData(await File.ReadAllBytesAsync(fetched)));
            Assert.True(plane.Stats.Segmented > 0, plane.Stats.ToString());
        }
        finally
        {
            await plane.StopAsync();
            root.Delete(recursive: true);
        }
    }
}
