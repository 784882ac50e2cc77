using System.Net;
using System.Text.Json;
using NatKit.Linux;
using NatKit.Scenarios.Matrix;
using NatKit.Scenarios.Probe;
using NatKit.Traversal.HardNat;
using NatKit.Traversal;

namespace NatKit.Cli.Tests;

/// <summary>The matrix's cells as network namespaces: the topology behaves as its types say, agents run as real
/// processes in a peer's namespace, and teardown leaves nothing (also when the build is cancelled).</summary>
public sealed class NetnsMatrixCellTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static string Natkit => Path.Combine(AppContext.BaseDirectory, "natkit.dll");

    private static MatrixType T(string name) => MatrixTypes.Find(name)!;

    [Fact]
    public void TheTopology_UsesTheInMemoryCellsAddresses_KernelRoutersForKernelTypes_AndADmzForOne2One()
    {
        var (segments, routers, hosts, dmz) = NetnsMatrixCell.Topology(T("kernel-dmz"), T("cgnat"), new NetnsMatrixOptions());
        Assert.Equal(["internet", "lan-a", "lan-b", "carrier1-b"], segments.Select(s => s.Name));
        var natA = routers.Single(r => r.Name == "nat-a");
        Assert.Equal(KernelNatKind.Dmz, natA.Kernel!.Kind);
        Assert.Equal("192.168.1.10", natA.Kernel.DmzHost.ToString());
        Assert.Equal(NetnsMatrixCell.AgentPort, natA.Kernel.DmzPort);
        Assert.Null(routers.Single(r => r.Name == "nat-b").Kernel);            // NatKit gateways
        Assert.Equal("100.65.1.2", routers.Single(r => r.Name == "nat-b").OutsideAddresses.Single().ToString());
        Assert.Equal("198.51.100.2", routers.Single(r => r.Name == "carrier1-nat-b").OutsideAddresses.Single().ToString());
        Assert.Equal(["203.0.113.10", "203.0.113.11"], hosts.Single(h => h.Name == "rendezvous").Addresses.Select(x => x.ToString()));
        Assert.Contains(hosts, h => h.Name == "turn");
        Assert.Empty(dmz);

        var one2one = NetnsMatrixCell.Topology(T("one2one"), T("open"), new NetnsMatrixOptions { Relay = false });
        Assert.Equal("192.168.1.10", one2one.Dmz["nat-a"].ToString());
        Assert.DoesNotContain(one2one.Hosts, h => h.Name == "turn");
        Assert.Equal("198.51.100.11", one2one.Hosts.Single(h => h.Name == "b").Addresses.Single().ToString());
        Assert.Throws<ArgumentException>(() => NetnsMatrixCell.Topology(T("same-lan"), T("open"), new NetnsMatrixOptions()));
    }

    /// <summary>Kernel <c>masquerade random</c> gives each destination a new random port; <c>masquerade
    /// persistent</c> keeps one: seen by NatKit's profiler on real sockets in the peers' namespaces, and by
    /// `natkit stun probe` run as a process in each.</summary>
    [PeerFact("ip", "nft", Root = true)]
    public async Task KernelMasqueradeRandom_ShowsARandomNewPortPerDestination_PersistentKeepsOne_AndTeardownLeavesNothing()
    {
        var tag = "m" + NetworkNamespace.NewRunTag();
        NamespaceProcess probeA, probeB;
        await using (var cell = await NetnsMatrixCell.CreateAsync(T("kernel-random"), T("kernel-persistent"), new NetnsMatrixOptions { Tag = tag }))
        {
            Assert.Equal([KernelNatKind.MasqueradeRandom, KernelNatKind.MasqueradePersistent], cell.Layout.KernelRouters.Select(r => r.Nat.Kind));

            using var timeout = new CancellationTokenSource(Deadline);
            var a = await LabProbe.ObservePortAllocationAsync(cell.Network("a"), cell.Services.Stun, timeout.Token);
            var b = await LabProbe.ObservePortAllocationAsync(cell.Network("b"), cell.Services.Stun, timeout.Token);
            Assert.NotNull(a);
            Assert.NotNull(b);
            Assert.Equal(IPAddress.Parse("198.51.100.1"), a.PublicAddress);
            Assert.Equal(PortAllocation.Random, a.Allocation);
            Assert.True(a.IsRandomSymmetric, a.ToString());
            Assert.Equal(IPAddress.Parse("198.51.100.2"), b.PublicAddress);
            Assert.Equal(PortAllocation.Fixed, b.Allocation);

            probeA = cell.Start("a", "dotnet", [Natkit, "stun", "probe", "203.0.113.10", "--json"]);
            probeB = cell.Start("b", "dotnet", [Natkit, "stun", "probe", "203.0.113.10", "--json"]);
            Assert.Equal(0, await probeA.WaitForExitAsync(timeout.Token));
            Assert.Equal(0, await probeB.WaitForExitAsync(timeout.Token));
            using var ja = JsonDocument.Parse(probeA.Output);
            using var jb = JsonDocument.Parse(probeB.Output);
            Assert.Equal("address-and-port-dependent", ja.RootElement[0].GetProperty("mapping").GetString());
            Assert.Equal("endpoint-independent", jb.RootElement[0].GetProperty("mapping").GetString());
            Assert.StartsWith("198.51.100.1:", ja.RootElement[0].GetProperty("mappedEndPoint").GetString(), StringComparison.Ordinal);
        }

        Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
    }

    /// <summary>NatKit gateways in namespaces: a sequential allocator is seen stepping, and a home NAT behind the
    /// carrier NAT shows one public port from the carrier's address.</summary>
    [PeerFact("ip", Root = true)]
    public async Task NatKitGateways_SequentialSymmetric_AndCarrierGradeDoubleNat_BehaveAsTheirPolicies()
    {
        var tag = "g" + NetworkNamespace.NewRunTag();
        await using (var cell = await NetnsMatrixCell.CreateAsync(T("symmetric-sequential"), T("cgnat"),
            new NetnsMatrixOptions { Tag = tag, Relay = false }))
        {
            Assert.Empty(cell.Layout.KernelRouters);
            Assert.Null(cell.Turn);
            using var timeout = new CancellationTokenSource(Deadline);
            var a = await LabProbe.ObservePortAllocationAsync(cell.Network("a"), cell.Services.Stun, timeout.Token);
            var b = await LabProbe.ObservePortAllocationAsync(cell.Network("b"), cell.Services.Stun, timeout.Token);
            Assert.NotNull(a);
            Assert.NotNull(b);
            Assert.Equal(PortAllocation.Sequential, a.Allocation);
            Assert.Equal(1, a.Step);
            Assert.Equal(IPAddress.Parse("198.51.100.2"), b.PublicAddress);
            Assert.Equal(PortAllocation.Fixed, b.Allocation);
        }

        Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
    }

    /// <summary>The --netns run's machinery on one cheap cell (no NAT on either side): built, handed to the runner,
    /// a runner's exception turned into a failed cell with its reason, and torn down.</summary>
    /// <summary>NatKit's traversal on real kernel NATs: <c>masquerade random</c> on both sides leaves no direct
    /// path, and the nodes (in this process, on real sockets in the peers' namespaces) end on the TURN relay, as the
    /// in-memory lab does for the same cell.</summary>
    [PeerFact("ip", "nft", Root = true)]
    public async Task KernelMasqueradeRandomOnBothSides_EndsOnTheRelay_AsInTheLab()
    {
        Assert.NotNull(MatrixRunners.Netns);
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var results = await NetnsMatrix.RunAsync(new MatrixOptions { Types = [T("kernel-random")] }, MatrixRunners.Netns,
            MatrixRunners.Default, cancellationToken: cts.Token);
        var r = Assert.Single(results);
        Assert.True(r.Outcome.Path == MatrixPath.Relay, r.Outcome.Detail);
        Assert.Equal(TraversalMethod.Relay, r.Outcome.Method);
        Assert.True(r.AgreesWithLab, $"lab: {r.Lab?.Path}");
    }

    [PeerFact("ip", Root = true)]
    public async Task NetnsMatrix_HandsEachCellToTheRunner_FailsTheCellOnItsException_AndTearsItDown()
    {
        string? tag = null;
        var results = await NetnsMatrix.RunAsync(new MatrixOptions { Types = [T("open")], Relay = false }, async (cell, _, ct) =>
        {
            tag = cell.Tag;
            await using var socket = await cell.Network("a").BindUdpAsync(new IPEndPoint(IPAddress.Any, NetnsMatrixCell.AgentPort), ct);
            throw new InvalidOperationException($"agent bound {socket.LocalEndPoint} in {cell.Namespace("a")}");
        });

        var r = Assert.Single(results);
        Assert.Equal(MatrixPath.Failed, r.Outcome.Path);
        Assert.Contains($"in nk-{tag}-a", r.Outcome.Detail, StringComparison.Ordinal);
        Assert.Null(r.Lab);
        Assert.False(r.AgreesWithLab);
        Assert.Equal(MatrixPath.Direct, r.Expected.Path);
        Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
    }

    [PeerFact("ip", "nft", Root = true)]
    public async Task ACancelledBuild_LeavesNoNamespace()
    {
        var tag = "x" + NetworkNamespace.NewRunTag();
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            NetnsMatrixCell.CreateAsync(T("kernel-random"), T("cgnat"), new NetnsMatrixOptions { Tag = tag }, cancel.Token));
        Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
    }
}
